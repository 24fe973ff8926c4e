"""The HTTP face of pushd: thin ``twisted.web`` resources over the service layer."""

from typing import List

__all__: List[str] = []
