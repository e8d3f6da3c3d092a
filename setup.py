import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def manifest_version() -> str:
    # manifest.yml is the single source of the version (jina hub computes the image tag from it).
    text = (HERE / 'manifest.yml').read_text(encoding='utf-8')
    return re.search(r'^version:\s*["\']?([0-9][^"\'\s#]*)', text, re.M).group(1)


# jina 0.9.33 installs on Python 3.8/3.9 only and pins that world (protobuf 3, numpy 1). An
# environment marker, not an extra, keeps `pip install .` on 3.8/3.9 exactly what it always
# was (the faithful jina 0.9.33 executor included; the hub image and old set-ups unchanged),
# while on 3.10+ the same command gives the jina-free core (towers, loading, download, encode,
# search, Python API). An extra would either break the 3.9 default or be an extra that can
# never resolve on 3.10+.
JINA09 = 'python_version < "3.10"'
CURRENT = 'python_version >= "3.10"'

setup(
    name='vseimageencoder',
    version=manifest_version(),
    description='VSE++ image and text embeddings: a jina-free core, jina 0.9.33 executors '
                '(Python 3.8/3.9) and jina 3 Executors (Python 3.10+)',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8') if (HERE / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['vseimageencoder', 'vseimageencoder.*']),
    package_data={'vseimageencoder.jina3': ['*.yml'], 'vseimageencoder.serve': ['static/*']},
    python_requires='>=3.8',
    install_requires=[
        'jina==0.9.33; ' + JINA09,
        'protobuf>=3.13,<3.21; ' + JINA09,
        'numpy>=1.19,<2; ' + JINA09,
        'numpy>=1.22; ' + CURRENT,
        # Approximate search in vseimageencoder.index (requirements.txt says why faiss).
        'faiss-cpu>=1.8,<2',
        'torch>=2.4',
        'torchvision>=0.19',
        'pyyaml>=5.3',
        'Pillow>=8',
        'nltk>=3.6,<4',
        # `serve` (vseimageencoder.serve): small pure-Python packages, in the core because
        # serving the page is the main job; ranges that hold both jina 0.9.33's Python 3.9
        # world and jina 3.34's (fastapi there needs starlette>=0.46, jina uvicorn<=0.23.1).
        'starlette>=0.40,<2',
        'uvicorn>=0.23.1,<1',
        'python-multipart>=0.0.18,<0.1',
    ],
    extras_require={
        # The jina 3 front end (vseimageencoder.jina3); requirements-jina3.txt has the same
        # pins plus the torch releases this repository is tested with.
        'jina3': [
            'jina==3.34.0; ' + CURRENT,
            'docarray>=0.40,<0.42; ' + CURRENT,
            'opentelemetry-instrumentation-aiohttp-client==0.52b0; ' + CURRENT,
            'opentelemetry-instrumentation-fastapi==0.52b0; ' + CURRENT,
            'opentelemetry-instrumentation-grpc==0.52b0; ' + CURRENT,
            'setuptools<81; ' + CURRENT,
            'pydantic>=2,<2.11; ' + CURRENT,
        ],
    },
    entry_points={'console_scripts': ['vseimageencoder = vseimageencoder.cli:main']},
    classifiers=[
        'Programming Language :: Python :: 3.8',
        'Programming Language :: Python :: 3.9',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Programming Language :: Python :: 3.13',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
