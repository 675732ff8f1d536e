from .clcr_recognizer import CLCRRecognizer

__all__ = ['CLCRRecognizer']
