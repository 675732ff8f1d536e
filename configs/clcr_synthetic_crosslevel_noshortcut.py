# Control for the private shortcut: CLCR as in clcr_synthetic_crosslevel.py,
# trained on a set generated without the shortcut (shape independent of
# sync in training too):
#   python tools/data/synthetic_crosslevel/generate.py --shortcut 0.5 \
#       --out-dir data/synthetic_crosslevel_noshortcut
# The val and test clips of that set are byte-identical to those of the
# default set (each split has its own random stream), so the two runs are
# scored on the same clips. In tools/analysis/ablation_runner.py:
#   --benchmark clcr_synthetic_crosslevel --runs clcr noshortcut
_base_ = ['./clcr_synthetic_crosslevel.py']

noshortcut_loader = dict(
    dataset=dict(data_root='data/synthetic_crosslevel_noshortcut'))
train_dataloader = noshortcut_loader
val_dataloader = noshortcut_loader
test_dataloader = noshortcut_loader
