//! What the figures mean, as `docs/metrics.md` defines them, built into
//! the service: the descriptions of table columns and the definitions an
//! open-data package carries. The document is the one source; a test
//! checks every metric has its row in it.

use momentum_domain::query::Metric;

/// docs/metrics.md, as built.
const METRICS_REFERENCE: &str = include_str!("../../../docs/metrics.md");

/// The definition of a trend metric: its row's second cell in the table
/// of "Trend metrics" (markdown as written).
pub(crate) fn metric_definition(metric: Metric) -> &'static str {
    let key = format!("| `{}` |", metric.as_str());
    METRICS_REFERENCE
        .lines()
        .find(|line| line.starts_with(&key))
        .and_then(|line| line.split(" | ").nth(1))
        .map(str::trim)
        .expect("docs/metrics.md defines every metric (a test checks it)")
}

/// A section of docs/metrics.md: from its `## ` heading to the next,
/// heading included.
pub(crate) fn section(heading: &str) -> &'static str {
    let start = METRICS_REFERENCE
        .find(&format!("\n## {heading}\n"))
        .map(|start| start + 1)
        .expect("docs/metrics.md has the section (a test checks it)");
    let rest = &METRICS_REFERENCE[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |end| end + 4);
    &rest[..end]
}

/// The sections of docs/metrics.md an open-data package carries.
pub(crate) const PACKAGE_SECTIONS: [&str; 4] =
    ["Which events count", "Trend metrics", "Cohorts", "The eight principles"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_its_definition_in_the_metrics_reference() {
        for metric in Metric::ALL {
            let definition = metric_definition(metric);
            assert!(!definition.is_empty() && !definition.contains('|'), "{}: {definition:?}", metric.as_str());
        }
        assert_eq!(metric_definition(Metric::Meetings), "`meeting.held` events in P");
    }

    #[test]
    fn each_packaged_section_runs_from_its_heading_to_the_next() {
        for heading in PACKAGE_SECTIONS {
            let text = section(heading);
            assert!(text.starts_with(&format!("## {heading}\n")), "{text:?}");
            assert!(!text[3..].contains("\n## "), "{heading} stops at the next section");
        }
        assert!(section("Trend metrics").contains("### The hourly value of volunteering"));
    }
}
