# CLCR on CMU-MOSEI, unaligned features (the protocol of MMSA's published
# MISA / MulT / TFN / Self-MM numbers): text 50, audio 500, vision 500
# steps, all kept; each sample's valid lengths mask the padding.
#   python tools/train.py configs/clcr_mosei_unaligned.py
_base_ = ['./clcr_mosei.py']

train_dataloader = val_dataloader = test_dataloader = dict(
    dataset=dict(ann_file='unaligned_50.pkl'))
