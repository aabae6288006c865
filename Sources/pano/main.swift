print("pano")
