import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def manifest_version() -> str:
    # manifest.yml is the single source of the version (jina hub computes the image tag from it).
    text = (HERE / 'manifest.yml').read_text(encoding='utf-8')
    return re.search(r'^version:\s*["\']?([0-9][^"\'\s#]*)', text, re.M).group(1)


setup(
    name='vseimageencoder',
    version=manifest_version(),
    description='VSE++ image embeddings as a jina 0.9.33 executor',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8') if (HERE / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['vseimageencoder', 'vseimageencoder.*']),
    python_requires=">=3.8,<3.10",
    install_requires=[
        'jina==0.9.33',
        'protobuf>=3.13,<3.21',
        'numpy>=1.19,<2',
        'torch>=2.4',
        'torchvision>=0.19',
        'pyyaml>=5.3',
        'Pillow>=8',
        'nltk>=3.6,<4',
    ],
    entry_points={'console_scripts': ['vseimageencoder = vseimageencoder.cli:main']},
    classifiers=[
        'Programming Language :: Python :: 3.8',
        'Programming Language :: Python :: 3.9',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
