from .data_preprocessor import VLPDataPreprocessor

__all__ = ['VLPDataPreprocessor']
