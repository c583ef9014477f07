"""Multimodal industrial visual inspection."""
