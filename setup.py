from setuptools import find_packages, setup


def read_requirements(path):
    with open(path) as f:
        return [line.split('#')[0].strip() for line in f
                if line.split('#')[0].strip()]


version = {}
with open('vlp/version.py') as f:
    exec(f.read(), version)

setup(
    name='vlp',
    version=version['__version__'],
    description='Vision-language pretraining in the OpenMMLab (mmengine) style',
    packages=find_packages(include=['vlp', 'vlp.*']),
    # the CLIP BPE merges (MIT, vlp/datasets/assets/LICENSE-CLIP-BPE)
    package_data={'vlp': ['datasets/assets/*']},
    python_requires='>=3.9',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={
        'tests': read_requirements('requirements/tests.txt'),
        'optional': read_requirements('requirements/optional.txt'),
    },
)
