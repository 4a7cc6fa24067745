"""Deliberately weak RSA keys, built from primes we choose: ROCA-form and close primes."""

from __future__ import annotations

import math
import secrets

from cryptography.hazmat.primitives.asymmetric import rsa

_SMALL = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def _probably_prime(n: int, rounds: int = 32) -> bool:
    if n < 2:
        return False
    for p in _SMALL[:50]:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _key(p: int, q: int) -> rsa.RSAPrivateKey:
    e = 65537
    n = p * q
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                    rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, n))
    return numbers.private_key()


def _roca_prime(bits: int) -> int:
    """p = k*M + (65537^a mod M), M the product of the ROCA fingerprint primes."""
    primes = [p for p in _SMALL if p <= 167]
    m = math.prod(primes)
    while True:
        a = secrets.randbelow(2 ** 20)
        k = secrets.randbits(bits - m.bit_length()) | (1 << (bits - m.bit_length() - 1))
        candidate = k * m + pow(65537, a, m)
        if candidate.bit_length() == bits and math.gcd(candidate - 1, 65537) == 1 \
                and _probably_prime(candidate):
            return candidate


def roca_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A real RSA key whose modulus carries the ROCA fingerprint."""
    return _key(_roca_prime(bits // 2), _roca_prime(bits // 2))


def close_primes_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A real RSA key whose primes are neighbours: Fermat factors it in one round."""
    start = secrets.randbits(bits // 2) | (3 << (bits // 2 - 2)) | 1
    p = start
    while not (_probably_prime(p) and math.gcd(p - 1, 65537) == 1):
        p += 2
    q = p + 2
    while not (_probably_prime(q) and math.gcd(q - 1, 65537) == 1):
        q += 2
    return _key(p, q)
