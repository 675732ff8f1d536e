# A new CLCR variant in ten lines: the audio-visual CLCR recognizer of
# projects/audio_visual_resnet with IntraCED swapped for this project's
# BottleneckExchange (MBT-style fusion bottleneck). Encoder, InterCAD,
# head, regularisers, data and schedule are inherited unchanged, so the two
# runs differ in the intra-level exchange only.
#
# Train (repository root; the project dir must be importable):
#   export PYTHONPATH=$PWD/projects/bottleneck_exchange:$PYTHONPATH
#   python tools/train.py <this config>
#   MMACTION=$(python -c "import mmaction, os; print(os.path.dirname(mmaction.__file__))")
#   python $MMACTION/.mim/tools/train.py <this config>   # mmaction2's own
_base_ = [
    '../../audio_visual_resnet/configs/'
    'clcr_r18-resnetaudio50_1xb16-6e_synthetic-av.py'
]

# clcr_bottleneck registers BottleneckExchange in mmaction2's MODELS.
custom_imports = dict(
    imports=['clcr_mm', 'clcr_bottleneck'], allow_failed_imports=False)

model = dict(
    intra_ced=dict(
        _delete_=True,  # drop IntraCED's own options (exchange, ...)
        type='BottleneckExchange',  # found in mmaction2's registry
        num_heads=4,
        num_bottlenecks=4,
        # CLCR's learnable token budget decides which shared tokens may
        # write into the bottleneck; the budget regulariser still applies.
        token_budget=dict(init_ratio=0.5, ratio_range=(0.1, 1.0))))
