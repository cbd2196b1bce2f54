"""COCO-style evaluation and side-by-side model comparison (`yolo-incep compare`)."""
