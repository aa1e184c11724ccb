//! Station access settings (issue 9.12): the node's environment and the IP networks of
//! `[station] allowed_networks` and `[http] trusted_proxies`, parsed once when the
//! configuration is read (an entry that is not a network names its key).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// `[node] environment`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A station without allow-list or mTLS answers anyone (one warning at start-up).
    #[default]
    Development,
    /// The station answers only allowed or mTLS-authenticated peers.
    Production,
}

/// One entry: a CIDR network (`203.0.113.0/24`, `2001:db8::/32`) or a single address.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    t.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{t}` is not an IP network (CIDR such as 203.0.113.0/24 or 2001:db8::/32) nor an address"))
}

fn networks<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Vec<IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .enumerate()
        .map(|(i, t)| {
            parse_network(t).map_err(|e| {
                serde::de::Error::custom(format!("configuration key `{key}[{i}]`: {e}"))
            })
        })
        .collect()
}

/// Deserializer of `[station] allowed_networks`.
pub fn allowed_networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    networks(d, "station.allowed_networks")
}

/// Deserializer of `[http] trusted_proxies`.
pub fn trusted_proxies<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    networks(d, "http.trusted_proxies")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_addresses_of_both_families_parse() {
        let n = parse_network("203.0.113.7/24").unwrap();
        assert_eq!(n.to_string(), "203.0.113.0/24");
        assert!(n.contains(&"203.0.113.200".parse::<IpAddr>().unwrap()));
        assert_eq!(parse_network("2001:db8::/32").unwrap().prefix_len(), 32);
        assert_eq!(parse_network(" 127.0.0.2 ").unwrap().prefix_len(), 32);
        assert_eq!(parse_network("::1").unwrap().prefix_len(), 128);
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("pagopa.it").is_err());
    }
}
