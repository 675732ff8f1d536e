# AVE (Audio-Visual Event): 4143 10 s YouTube clips of 28 event classes,
# used as video-level classification (the label is the clip's event
# category; the annotated event segment is not used), official split
# 3339 / 402 / 402.
# Prepare (once): python tools/data/ave/prepare.py --root data/ave
# which writes data/ave/{train,val,test}_list.txt ("AVE/<id>.mp4 <label>",
# audio read from the video's own track) and classes.txt (the sorted
# Categories of Annotations.txt).
#
# AVE clips are 10 s YouTube clips like Kinetics-Sounds, so everything but
# the paths is Kinetics-Sounds' (literature practice: OGM-GE, PMR, MMPareto
# train a ResNet-18 per modality from scratch on a few frames + the clip's
# audio). Inputs per sample:
#   rgb   uint8   (1, 3, 3, 224, 224)  3 frames, one from each third of the
#                                      clip (random within its third in
#                                      training, the middle in testing)
#   audio float32 (1, 1, 1001, 128)    log-mel of the whole 10 s at 16 kHz
#                                      (shorter clips padded); see
#                                      kinetics_sounds.py for the window
#                                      and the Decord video backend.
_base_ = ['./kinetics_sounds.py']

data_root = 'data/ave'

# The base copied its own data_root into these: point them at AVE.
av_dataset_common = dict(data_root=data_root)
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
