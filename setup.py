"""Install clcr_mm, the CLCR plugin for mmaction2 / mmengine."""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    scope = {}
    with open(osp.join(HERE, 'clcr_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


# Ranges, not pins, so that `pip install` keeps the torch a user already has
# (a CUDA build, say). Each bound is one we have checked (README,
# "Installation"); the exact tested set is requirements/constraints.txt.
# torchaudio 2.11.1 (the last release) accepts any torch>=2.11. mmaction2
# 1.2.0 refuses mmcv>=2.2, and clcr_mm/compat.py repairs exactly mmaction2
# 1.2.
INSTALL_REQUIRES = [
    'torch>=2.4,<2.15',
    'torchvision>=0.19,<0.30',
    'torchaudio>=2.4,<2.12',
    'mmengine>=0.10.7,<0.11',
    'mmcv-lite>=2.1.0,<2.2',
    'mmaction2>=1.2.0,<1.3',
    'importlib_metadata',  # undeclared import of mmaction2 1.2.0
    # mmengine 0.10.7 imports pkg_resources (e.g. for `mmaction::` config
    # bases), which setuptools 82 removed; torch>=2.12 no longer caps it
    'setuptools<82',
    'av>=12',
    'soundfile>=0.12',
    'opencv-python-headless',
    'numpy',
    'scipy',
    'matplotlib',
]

# BertTextEncoder; checked with transformers 4.45.2, 4.57.1 and 5.24.0.
# mmaction2 1.2.0's VindLU models, which it imports whenever transformers is
# installed, need more (timm, einops, transformers<4.56): clcr_mm.compat
# keeps them off where that is missing.
BERT_REQUIRES = ['transformers>=4.28,<6']

EXTRAS_REQUIRE = {
    # tensorboard: the tests also exercise mmengine's TensorboardVisBackend
    # timm and einops: the tests also import mmaction2 with VindLU on
    'tests': ['pytest>=7', 'tensorboard', 'timm', 'einops'] + BERT_REQUIRES,
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
