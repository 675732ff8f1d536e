# The embedded cross-level benchmark: seeded audio-visual clips made by
# tools/data/synthetic_crosslevel/generate.py (64x64, 16 frames at 8 fps,
# 16 kHz mono AAC in real mp4 files), read by exactly the loaders and
# pipelines of synthetic_av.py. 16 classes = sync (relation of the two
# tempos) x direction (shared, coarse in vision, fine in audio) x colour
# (visual) x timbre (audio); see tools/data/synthetic_crosslevel/README.md.
#
# Only variables live here, none of the keys of a runnable config: each
# configs/clcr_synthetic_crosslevel*.py lists this file as a second base
# beside its clcr_synthetic_av* counterpart (mmengine forbids a key in two
# bases), so the model, schedule and variant come from that counterpart and
# only the data root, the class count and the number of epochs change:
#   model = dict(cls_head=dict(num_classes={{_base_.crosslevel_num_classes}}))
#   train_cfg = dict(max_epochs={{_base_.crosslevel_max_epochs}})
#   train_dataloader = {{_base_.crosslevel_loader}}   # same for val, test
crosslevel_data_root = 'data/synthetic_crosslevel'
crosslevel_num_classes = 16
# 10 epochs of 40 iterations (the cosine of adamw_short.py follows): one
# CLCR run takes about 4 min on one idle core, so the comparison's runs fit
# the benchmark's ~2 h budget (tools/data/synthetic_crosslevel/README.md).
crosslevel_max_epochs = 10
crosslevel_loader = dict(dataset=dict(data_root=crosslevel_data_root))
