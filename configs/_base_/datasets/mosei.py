# CMU-MOSEI sentiment regression on the MMSA feature pickles
# (see tools/data/mmsa/README.md). Text: BERT (768), audio: COVAREP (74),
# vision: Facet (35). Every modality becomes a (1, L, D) float32 tensor.
# Everything else (aligned_50.pkl, every stored step kept, valid lengths,
# pipeline, loaders, metric) is MOSI's; only the paths, feature widths and
# the handling of non-finite values differ. Unaligned (audio 500, vision
# 500 steps): configs/clcr_mosei_unaligned.py.
_base_ = ['./mosi.py']

data_root = 'data/mosei'
mmsa_feat_dims = dict(audio=74, vision=35)  # text: BERT 768, as in MOSI

mmsa_dataset_common = dict(
    data_root=data_root,
    feat_dims=mmsa_feat_dims,
    # The published MOSEI pickles hold -inf in COVAREP audio; they are
    # replaced by 0 (as MMSA's loader does) and the count is logged. Any
    # NaN/inf in text or vision still raises. (_delete_: MOSI's value is
    # the string 'error', which a dict cannot merge into.)
    nonfinite=dict(_delete_=True, text='error', audio='zero', vision='error'))
# mosi.py copied its own values into the loaders' datasets: point them at
# MOSEI too.
train_dataloader = dict(dataset=mmsa_dataset_common)
val_dataloader = dict(dataset=mmsa_dataset_common)
test_dataloader = dict(dataset=mmsa_dataset_common)
