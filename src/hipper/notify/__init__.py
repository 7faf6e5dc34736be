"""Notifications (SPEC H3, L, M4): e-mail with the voicemail attached, and Web Push for missed calls and voicemail."""

from hipper.notify.dispatcher import Notifications, start_notifications

__all__ = ["Notifications", "start_notifications"]
