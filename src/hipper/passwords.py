"""Password and PIN hashing with argon2id, always off the event loop (each hash costs tens of ms)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hipper.offload import run_cpu


class Hasher:
    def __init__(self, time_cost: int = 3, memory_cost: int = 65536) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost)

    def hash_sync(self, secret: str) -> str:
        return self._hasher.hash(secret)

    async def hash(self, secret: str) -> str:
        return await run_cpu(self._hasher.hash, secret)

    async def verify(self, hashed: str | None, secret: str) -> bool:
        if not hashed:
            # Spend the same time as a real check so a missing user cannot be told from a wrong password.
            await run_cpu(self._hasher.hash, secret)
            return False
        try:
            return await run_cpu(self._hasher.verify, hashed, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
