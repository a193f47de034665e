//! CIDR blocks for `sourceCidrs`.

use std::net::IpAddr;

use crate::error::quoted;

/// An address block such as `10.0.0.0/8` or `::1/128`. Host bits given in the address are
/// ignored (masked), as Envoy does for its CIDR ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    V4 { network: u32, prefix: u8 },
    V6 { network: u128, prefix: u8 },
}

impl Cidr {
    /// Parses `address/prefix`; a bare address means a single host (`/32` or `/128`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| {
            format!(
                "{} is not a CIDR block: {} is not an IP address",
                quoted(text),
                quoted(addr)
            )
        })?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => {
                    return Err(format!(
                        "{} is not a CIDR block: prefix length {} is not a number from 0 to {max}",
                        quoted(text),
                        quoted(p)
                    ))
                }
            },
        };
        Ok(match ip {
            IpAddr::V4(v4) => Cidr::V4 {
                network: u32::from(v4) & mask32(prefix),
                prefix,
            },
            IpAddr::V6(v6) => Cidr::V6 {
                network: u128::from(v6) & mask128(prefix),
                prefix,
            },
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip.to_canonical()) {
            (Cidr::V4 { network, prefix }, IpAddr::V4(v4)) => {
                u32::from(v4) & mask32(*prefix) == *network
            }
            (Cidr::V6 { network, prefix }, IpAddr::V6(v6)) => {
                u128::from(v6) & mask128(*prefix) == *network
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_blocks() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(!c.contains(ip("::1")));
        assert!(
            c.contains(ip("::ffff:10.1.1.1")),
            "IPv4-mapped IPv6 matches IPv4 blocks"
        );
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("203.0.113.9")));
        assert!(Cidr::parse("192.168.1.7")
            .unwrap()
            .contains(ip("192.168.1.7")));
        assert!(!Cidr::parse("192.168.1.7")
            .unwrap()
            .contains(ip("192.168.1.8")));
        assert_eq!(
            Cidr::parse("10.1.2.3/8").unwrap(),
            Cidr::parse("10.0.0.0/8").unwrap()
        );
    }

    #[test]
    fn ipv6_blocks() {
        let c = Cidr::parse("::1/128").unwrap();
        assert!(c.contains(ip("::1")));
        assert!(!c.contains(ip("::2")));
        let d = Cidr::parse("2001:db8::/32").unwrap();
        assert!(d.contains(ip("2001:db8:ffff::1")));
        assert!(!d.contains(ip("2001:db9::1")));
        assert!(!d.contains(ip("10.0.0.1")));
    }

    #[test]
    fn bad_blocks_are_rejected_with_reasons() {
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(Cidr::parse("::/129").unwrap_err().contains("0 to 128"));
        assert!(Cidr::parse("10.0.0/8")
            .unwrap_err()
            .contains("not an IP address"));
        assert!(Cidr::parse("10.0.0.0/").is_err());
        assert!(Cidr::parse("10.0.0.0/+8").is_err());
        assert!(Cidr::parse("").is_err());
    }
}
