"""Which addresses webhook deliveries may reach (SSRF guard), checked without the network."""

import ipaddress

import pytest

from marketplace import url_guard


class TestIsPublic:
    @pytest.mark.parametrize(
        "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2001:4860:4860::8888"]
    )
    def test_global_unicast_is_public(self, address: str) -> None:
        assert url_guard.is_public(ipaddress.ip_address(address))

    @pytest.mark.parametrize(
        "address",
        [
            "127.0.0.1",  # loopback
            "10.0.0.1",  # private
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",  # link-local: AWS, GCP and Azure metadata
            "100.100.100.200",  # shared address space: Alibaba Cloud metadata
            "0.0.0.0",
            "224.0.0.1",  # multicast
            "::1",
            "fe80::1",
            "fd00:ec2::254",  # unique local: AWS metadata over IPv6
            "::ffff:127.0.0.1",  # IPv4-mapped loopback
            "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
            "2002:a9fe:a9fe::",  # 6to4 wrapping 169.254.169.254
            "64:ff9b::a00:1",  # NAT64 wrapping 10.0.0.1
            "ff02::1",
        ],
    )
    def test_internal_addresses_are_not(self, address: str) -> None:
        assert not url_guard.is_public(ipaddress.ip_address(address))


class TestResolve:
    def test_a_literal_private_address_is_refused(self) -> None:
        with pytest.raises(url_guard.UnsafeUrl, match="not a public address"):
            url_guard.resolve("http://10.0.0.1/hooks", allow_private=False)

    def test_allowing_private_addresses_returns_them(self) -> None:
        assert url_guard.resolve("http://127.0.0.1:8080/x", allow_private=True) == [
            ipaddress.ip_address("127.0.0.1")
        ]

    def test_other_schemes_are_refused(self) -> None:
        with pytest.raises(url_guard.UnsafeUrl, match="http and https"):
            url_guard.resolve("ftp://8.8.8.8/file", allow_private=True)

    def test_a_literal_public_address_resolves_to_itself(self) -> None:
        assert url_guard.resolve("https://8.8.8.8/hooks", allow_private=False) == [
            ipaddress.ip_address("8.8.8.8")
        ]
