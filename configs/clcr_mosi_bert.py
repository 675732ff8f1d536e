# CLCR on CMU-MOSI with a fine-tuned BERT text encoder over MMSA's
# ``text_bert`` token ids (as MISA, Self-MM and MMIM do) instead of the
# fixed ``text`` features, on the unaligned features: MMSA's protocol.
# Needs ``pip install "clcr_mm[bert]"`` and a local BERT directory (nothing
# is downloaded), e.g. bert-base-uncased saved with
# ``BertModel.save_pretrained('data/bert-base-uncased')`` on a machine with
# internet access; elsewhere pass --cfg-options
# model.backbone.modalities.text.backbone.pretrained=DIR.
#   python tools/train.py configs/clcr_mosi_bert.py
_base_ = ['./clcr_mosi_unaligned.py']

bert_dir = 'data/bert-base-uncased'
bert_width = 768

model = dict(
    backbone=dict(
        modalities=dict(
            text=dict(
                backbone=dict(
                    _delete_=True,
                    type='BertTextEncoder',
                    pretrained=bert_dir,
                    tap_layers=(4, 8, 12)),
                taps=('levels.0', 'levels.1', 'levels.2'),
                tap_channels=(bert_width, ) * 3))))

# text_bert: (N, 3, 50) ids / mask / segments, served as (50, 3).
train_dataloader = val_dataloader = test_dataloader = dict(
    dataset=dict(modalities=dict(text='text_bert'), feat_dims=dict(text=3)))

# BERT is fine-tuned at its own learning rate: 1e-3 * 0.05 = 5e-5, the
# usual BERT fine-tuning rate (MISA, Self-MM), without weight decay.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'backbone.encoders.text.backbone.bert':
            dict(lr_mult=0.05, decay_mult=0.0)
        }))
