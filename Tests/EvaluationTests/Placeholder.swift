// Tests of module Evaluation live beside this file.
