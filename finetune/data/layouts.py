"""The folder layout each `--from` format expects, as `data convert / validate / split --help` shows it.

Kept beside the readers so the text changes with them; lines stay short (help is often read in 80 columns) and
free of square brackets (the help renderer would take them for markup).
"""

from __future__ import annotations

LAYOUTS = """Folder layouts (--from FORMAT); folder names match in any case
(ANNOTATIONS/, jpegimages/ work):

voc      DIR/Annotations/**/NAME.xml    one XML per image, same path
         DIR/JPEGImages/**/NAME.jpg     (or DIR/images/; any image type)
         DIR/classes.txt                class order, one name per line
                                        or --classes a,b, or
                                        --discover-classes
         DIR/ImageSets/Main/*.txt       not read: every XML and image is
         An XML pairs with the image of its name (else the only image of
         that name anywhere, else its <filename>); a <filename> naming
         another image is an error.

coco     DIR/annotations.json           or the only DIR/*.json
         DIR/images/**                  file_name under images/ or DIR
         bbox = x, y, width, height in pixels; classes from 'categories';
         an image listed without annotations is defect-free.

yolo     DIR/images/**/NAME.jpg
         DIR/labels/**/NAME.txt         same path; one line per box:
                                        class_id cx cy w h (fractions);
                                        an empty file = defect-free
         DIR/data.yaml (names:) or DIR/classes.txt

deeppcb  DIR/PCBData/trainval.txt, test.txt   (--split)
         DIR/PCBData/groupG/G/ID_test.jpg     ID_temp.jpg with
                                              --include-templates
         DIR/PCBData/groupG/G_not/ID.txt      x1 y1 x2 y2 type (1..6)

jsonl    DIR/annotations.jsonl          one line per image: {"image":
                                        "images/a.png", "prefix": "<OD>",
                                        "suffix": "label<loc_N>x4 ..."};
                                        an empty suffix = defect-free;
                                        also <DENSE_REGION_CAPTION> and
                                        <CAPTION_TO_PHRASE_GROUNDING>phrase
                                        lines (docs/data.md)
         DIR/classes.txt                class order (or --classes)
         DIR/images/**

paligemma DIR/annotations.jsonl         one line per image: {"image":
                                        "images/a.png", "prefix":
                                        "detect a ; b", "suffix":
                                        "<loc>x4 a ; <loc>x4 b"}, bins
                                        0..1023 as y1 x1 y2 x2; every
                                        prefix asks for all classes;
                                        an empty suffix = defect-free
         DIR/classes.txt                class order (or --classes, else
                                        the first prefix)
         DIR/images/**

voc, yolo: an image without its annotation file is an error unless
--unlabelled-as-good takes it as a defect-free frame."""
