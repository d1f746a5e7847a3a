"""1. Input preparation: read an image or video, make it grayscale, find every face (CNN or Haar),
crop each to a model's input (aligned by its landmarks), and read labelled training sets
(`datasets/`). Imports only the ground (`mimika.common`)."""
