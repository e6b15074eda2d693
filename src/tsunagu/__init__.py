"""Tsunagu: a self-hostable contact-center platform speaking real SIP and RTP."""

__version__ = "0.1.0"
