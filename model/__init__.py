"""spamgate's shared core: parsing, features, artifact format and scoring.

Training and serving import the same functions from here, so a message is
turned into features exactly one way (no training/serving skew).
"""
