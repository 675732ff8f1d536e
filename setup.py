"""Install clcr_mm, the CLCR plugin for mmaction2 / mmengine."""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    scope = {}
    with open(osp.join(HERE, 'clcr_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


# One set that installs together on Python 3.11 (CPU or CUDA): torchvision
# and torchaudio each pin an exact torch; mmaction2 1.2.0 refuses mmcv>=2.2.
INSTALL_REQUIRES = [
    'torch==2.11.0',
    'torchvision==0.26.0',
    'torchaudio==2.11.0',
    'mmengine==0.10.7',
    'mmcv-lite==2.1.0',
    'mmaction2==1.2.0',
    'importlib_metadata',  # undeclared import of mmaction2 1.2.0
    'av>=12',
    'soundfile>=0.12',
    'opencv-python-headless',
    'numpy',
    'scipy',
    'matplotlib',
]

# BertTextEncoder. With transformers installed, mmaction2 1.2.0 imports its
# VindLU models, which need timm, einops and transformers API removed after
# 4.45 (apply_chunking_to_forward in modeling_utils).
BERT_REQUIRES = ['transformers>=4.28,<4.46', 'timm', 'einops']

EXTRAS_REQUIRE = {
    # tensorboard: the tests also exercise mmengine's TensorboardVisBackend
    'tests': ['pytest>=7', 'tensorboard'] + BERT_REQUIRES,
    'bert': BERT_REQUIRES,
    'tensorboard': ['tensorboard'],
}

setup(
    name='clcr_mm',
    version=read_version(),
    description='CLCR: Cross-Level Semantic Collaborative Representation '
    'for multimodal learning, as an OpenMMLab (mmaction2) plugin',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['clcr_mm', 'clcr_mm.*']),
    python_requires='>=3.9',
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license='Apache License 2.0',
)
