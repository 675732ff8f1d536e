# CMU-MOSI sentiment regression on the MMSA feature pickles
# (see tools/data/mmsa/README.md). Text: BERT (768), audio: COVAREP (5),
# vision: Facet (20). Every modality becomes a (1, L, D) float32 tensor.
dataset_type = 'MMSAFeatureDataset'
data_root = 'data/mosi'
# 'aligned_50.pkl': all modalities word-aligned to 50 steps;
# 'unaligned_50.pkl' (audio 375, vision 500 steps): configs/clcr_mosi_
# unaligned.py. Every stored step is kept (seq_len=None) and each sample's
# valid lengths (audio_lengths, vision_lengths, the text_bert mask) travel
# as 'valid_lengths', from which the model masks the padding. An int
# seq_len cuts longer sequences, with a warning and a logged count.
ann_file = 'aligned_50.pkl'
mmsa_modalities = dict(text='text', audio='audio', vision='vision')
mmsa_feat_dims = dict(text=768, audio=5, vision=20)
mmsa_seq_len = None
mmsa_keys = tuple(mmsa_modalities)

mmsa_pipeline = [
    dict(type='PadSequenceFeatures', keys=mmsa_keys, seq_len=mmsa_seq_len),
    dict(
        type='PackMultiModalInputs',
        collect_keys=mmsa_keys,
        algorithm_keys=('modality_mask', ),
        meta_keys=('sample_id', 'valid_lengths', 'zero_filled'))
]
train_pipeline = mmsa_pipeline
val_pipeline = mmsa_pipeline
test_pipeline = mmsa_pipeline

mmsa_dataset_common = dict(
    type=dataset_type,
    data_root=data_root,
    ann_file=ann_file,
    modalities=mmsa_modalities,
    feat_dims=mmsa_feat_dims,
    nonfinite='error')

train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        **mmsa_dataset_common, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        **mmsa_dataset_common, split='valid', pipeline=val_pipeline,
        test_mode=True))
# The validation loader on the test split.
test_dataloader = dict(
    val_dataloader,
    dataset=dict(
        val_dataloader['dataset'], split='test', pipeline=test_pipeline))

# Keys: mae, corr, acc2_has0, f1_has0, acc2_non0, f1_non0, acc5, acc7.
val_evaluator = dict(type='SentimentRegressionMetric')
test_evaluator = val_evaluator
