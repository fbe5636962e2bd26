import uuid

import jwt
import pytest
from pydantic import SecretStr

from milepost_common.auth import (
    PasswordHasher,
    Realm,
    TokenCodec,
    hash_secret,
    new_secret,
    secrets_match,
)
from milepost_common.errors import Unauthorized
from milepost_common.settings import AuthSettings


def auth_settings(**keys: str) -> AuthSettings:
    return AuthSettings(
        jwt_keys={k: SecretStr(v) for k, v in keys.items()},
        admin_jwt_keys={"admin-1": SecretStr(ADMIN)},
        argon2_time_cost=1,
        argon2_memory_kib=64,
    )


OLD = "old-key-" + "a" * 32
NEW = "new-key-" + "b" * 32
ADMIN = "admin-key-" + "c" * 32


class TestTokenCodec:
    def test_round_trip_carries_the_standard_claims(self) -> None:
        codec = TokenCodec(auth_settings(k1=OLD), Realm.API)
        user = uuid.uuid4()
        token, ttl = codec.issue(user, Realm.API, 900)
        claims = codec.verify(token, Realm.API)
        assert claims.subject == user
        assert ttl == 900
        assert jwt.get_unverified_header(token)["kid"] == "k1"
        raw = jwt.decode(token, options={"verify_signature": False})
        assert {"iss", "aud", "exp", "iat", "jti", "sub"} <= raw.keys()

    def test_other_realm_is_refused(self) -> None:
        codec = TokenCodec(auth_settings(k1=OLD), Realm.API, Realm.ADMIN)
        token, _ = codec.issue(uuid.uuid4(), Realm.ADMIN, 900)
        with pytest.raises(Unauthorized):
            codec.verify(token, Realm.API)

    def test_each_realm_signs_with_its_own_key_set(self) -> None:
        codec = TokenCodec(auth_settings(k1=OLD), Realm.API, Realm.ADMIN)
        admin_token, _ = codec.issue(uuid.uuid4(), Realm.ADMIN, 900)

        assert jwt.get_unverified_header(admin_token)["kid"] == "admin-1"
        jwt.decode(admin_token, ADMIN, ["HS256"], audience="admin", issuer="milepost")

    def test_an_admin_key_never_vouches_for_an_api_token(self) -> None:
        # Signed with the admin key set, claiming the api realm, even under an api kid.
        claims = {"sub": str(uuid.uuid4()), "aud": "api", "iss": "milepost", "jti": "j"}
        claims |= {"iat": 1, "exp": 2**40}
        forged = [
            jwt.encode(claims, ADMIN, "HS256", headers={"kid": kid}) for kid in ("admin-1", "k1")
        ]
        codec = TokenCodec(auth_settings(k1=OLD), Realm.API, Realm.ADMIN)

        for token in forged:
            with pytest.raises(Unauthorized):
                codec.verify(token, Realm.API)

    def test_a_codec_holds_only_the_realms_it_is_built_for(self) -> None:
        both = TokenCodec(auth_settings(k1=OLD), Realm.API, Realm.ADMIN)
        admin_token, _ = both.issue(uuid.uuid4(), Realm.ADMIN, 900)
        api_only = TokenCodec(auth_settings(k1=OLD), Realm.API)

        with pytest.raises(Unauthorized):
            api_only.verify(admin_token, Realm.ADMIN)
        with pytest.raises(KeyError):
            api_only.issue(uuid.uuid4(), Realm.ADMIN, 900)

    def test_a_realm_without_keys_cannot_be_served(self) -> None:
        with pytest.raises(ValueError, match="ADMIN_JWT_KEYS"):
            TokenCodec(AuthSettings(jwt_keys={"k1": SecretStr(OLD)}), Realm.ADMIN)

    def test_expired_is_refused(self) -> None:
        codec = TokenCodec(auth_settings(k1=OLD), Realm.API)
        token, _ = codec.issue(uuid.uuid4(), Realm.API, -10)
        with pytest.raises(Unauthorized):
            codec.verify(token, Realm.API)

    def test_tampered_is_refused(self) -> None:
        codec = TokenCodec(auth_settings(k1=OLD), Realm.API)
        token, _ = codec.issue(uuid.uuid4(), Realm.API, 900)
        header, _, signature = token.split(".")
        forged = jwt.encode(
            {"sub": str(uuid.uuid4()), "aud": "api"}, "guess" * 8, "HS256", headers={"kid": "k1"}
        )
        with pytest.raises(Unauthorized):
            codec.verify(f"{header}.{forged.split('.')[1]}.{signature}", Realm.API)

    def test_rotation_old_tokens_still_verify_new_ones_use_the_new_key(self) -> None:
        before = TokenCodec(auth_settings(k1=OLD), Realm.API)
        old_token, _ = before.issue(uuid.uuid4(), Realm.API, 900)
        after = TokenCodec(
            AuthSettings(
                jwt_keys={"k1": SecretStr(OLD), "k2": SecretStr(NEW)}, jwt_active_kid="k2"
            ),
            Realm.API,
        )
        assert after.verify(old_token, Realm.API)
        new_token, _ = after.issue(uuid.uuid4(), Realm.API, 900)
        assert jwt.get_unverified_header(new_token)["kid"] == "k2"
        with pytest.raises(Unauthorized):
            before.verify(new_token, Realm.API)


class TestPasswordHasher:
    async def test_verify_accepts_the_right_password_only(self) -> None:
        hasher = PasswordHasher(auth_settings(k1=OLD))
        hashed = await hasher.hash("s3cret-password")
        assert hashed.startswith("$argon2id$")
        assert await hasher.verify("s3cret-password", hashed)
        assert not await hasher.verify("wrong", hashed)

    async def test_unknown_user_costs_a_verification_and_fails(self) -> None:
        hasher = PasswordHasher(auth_settings(k1=OLD))
        assert not await hasher.verify("anything", None)


class TestSecrets:
    def test_stored_form_is_a_hash_and_compares(self) -> None:
        secret = new_secret("mp")
        stored = hash_secret(secret, "pepper")
        assert secret not in stored
        assert len(stored) == 64
        assert secrets_match(secret, stored, "pepper")
        assert not secrets_match(secret, stored, "other-pepper")
