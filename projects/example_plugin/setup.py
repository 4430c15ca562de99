from setuptools import setup

setup(name='vlp-example-plugin', version='0.1.0', packages=['vlp_example_plugin'],
      install_requires=['vlp'])
