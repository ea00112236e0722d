"""The `maskrcnn` model family: torchvision Mask R-CNN, boxes with instance masks (`family.py` registers it)."""
