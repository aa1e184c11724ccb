//! The feed view of the configuration: an organization's [`FeedOrg`] (IPA code, notice codes,
//! IBANs, the services usable as `tipoDovuto` with the notice code each generates with) and
//! the zip limits.

use std::collections::HashMap;

use anyhow::Context as _;
use mpay_config::{OrganizationSettings, Settings};
use mpay_messages::feeds::{Mb14AmountMode, ZipLimits};
use mpay_messages::{Iban, NoticeLayout, OrgFiscalCode};
use mpay_storage::feeds::{FeedOrg, FeedService as FeedDebtType};

/// The notice layout a service generates with: its own segregation / application code when it
/// names one (issue 10: one code per back-office system), else the organization's default.
fn service_layout(
    o: &OrganizationSettings,
    default: &NoticeLayout,
    segregation: Option<u8>,
    application: Option<u8>,
) -> Option<NoticeLayout> {
    let candidates =
        std::iter::once(*default).chain(o.notice_codes.iter().filter_map(|c| c.layout().ok()));
    let wanted = |l: &NoticeLayout| match (segregation, application, l) {
        (Some(s), _, NoticeLayout::Aux3 { segregation_code }) => *segregation_code == s,
        (None, Some(a), NoticeLayout::Aux0 { application_code }) => *application_code == a,
        _ => false,
    };
    if segregation.is_none() && application.is_none() {
        return None;
    }
    candidates.into_iter().find(wanted)
}

/// The feed view of one configured organization (FORMAT.md §5.4, §5.5).
///
/// # Errors
/// Unusable organization settings (they were validated at load: only a bug gets here).
pub fn feed_org(settings: &Settings, o: &OrganizationSettings) -> anyhow::Result<FeedOrg> {
    let fiscal_code = OrgFiscalCode::parse_unchecked(&o.fiscal_code)
        .with_context(|| format!("organization {}", o.fiscal_code))?;
    let layout = o.layout().map_err(anyhow::Error::msg)?;
    let other_layouts = o
        .notice_codes
        .iter()
        .map(|c| c.layout().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ibans = o
        .ibans
        .iter()
        .chain(&o.postal_ibans)
        .map(|i| Iban::parse_unchecked(i).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let services = settings
        .services
        .iter()
        .filter(|s| s.organization == o.fiscal_code)
        .map(|s| {
            Iban::parse_unchecked(&s.iban)
                .map(|iban| (s, iban))
                .map_err(|e| anyhow::anyhow!("service {}: IBAN {e}", s.code))
        })
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .map(|(s, iban)| FeedDebtType {
            code: s.code.clone(),
            iban: Some(iban),
            category: Some(s.category.clone()),
            due_date_required: s.due_date_required,
            active: s.feeds_enabled,
            anonymous_allowed: s.anonymous_allowed,
            layout: service_layout(o, &layout, s.segregation_code, s.application_code),
        })
        .collect();
    let mb14_amount_mode = match o.mb14_amount_mode.as_deref().map(str::to_ascii_uppercase) {
        Some(m) if m == "PU" => Mb14AmountMode::Pu,
        _ => Mb14AmountMode::Mypay,
    };
    Ok(FeedOrg {
        fiscal_code,
        name: o.name.clone(),
        ipa_code: o.ipa_code.clone(),
        layout,
        other_layouts,
        ibans,
        services,
        mb14_amount_mode,
        default_due_date: o.feed_default_due_date,
    })
}

/// Every configured organization's [`FeedOrg`], by fiscal code. An organization whose code is
/// in GPD's looser form (`gpd_compat.free_identifiers`) has none: it is REST-only, and a feed
/// for it is refused as for an unknown organization.
///
/// # Errors
/// As [`feed_org`].
pub fn feed_orgs(settings: &Settings) -> anyhow::Result<HashMap<String, FeedOrg>> {
    settings
        .organizations
        .iter()
        .filter(|o| OrgFiscalCode::parse_unchecked(&o.fiscal_code).is_ok())
        .map(|o| Ok((o.fiscal_code.clone(), feed_org(settings, o)?)))
        .collect()
}

/// The zip-bomb guards configured in `[feeds]` (`zip_max_entries`, `zip_max_csv_bytes`,
/// `zip_max_ratio`).
pub fn zip_limits(settings: &Settings) -> ZipLimits {
    ZipLimits {
        max_entries: settings.feeds.zip_max_entries,
        max_csv_bytes: settings.feeds.zip_max_csv_bytes,
        max_ratio: settings.feeds.zip_max_ratio,
        ..ZipLimits::default()
    }
}
