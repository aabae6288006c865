// Tests of module Fields live beside this file.
