//! A movement's open-data package: a Frictionless Tabular Data Package
//! (<https://specs.frictionlessdata.io/tabular-data-package/>) in one zip.
//! It holds the weekly and monthly trends, the monthly cohorts and the
//! principles as CSV, a `datapackage.json` describing each file's columns
//! (descriptions from docs/metrics.md), and a README with the definitions,
//! the watermark, the hourly value of volunteering and the suppression
//! applied. Which figures go in, and for whom, is the route's; this module
//! only lays them out.

use std::io::Write;

use chrono::{DateTime, NaiveDate, Utc};
use momentum_domain::query::{Cohorts, Principles, Trend};
use serde_json::{Value, json};
use zip::write::SimpleFileOptions;

use crate::definitions::{PACKAGE_SECTIONS, section};
use crate::tables::{FileFormat, Layout, TableAnswer, TableFile};

/// Writing a package failed: a table or the zip could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PackageError {
    #[error(transparent)]
    Table(#[from] momentum_tables::WriteError),
    #[error("cannot write the zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("cannot write the zip: {0}")]
    Write(#[from] std::io::Error),
}

/// The licence an operator publishes a movement's open data under
/// (`MOMENTUM_OPEN_DATA_LICENSE`), as the package names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OpenDataLicense {
    /// Open Government Licence v3.0: the UK public sector's default.
    #[value(name = "OGL-UK-3.0")]
    OglUk3,
    /// Creative Commons Attribution 4.0.
    #[value(name = "CC-BY-4.0")]
    CcBy4,
    /// Open Data Commons Attribution License 1.0.
    #[value(name = "ODC-BY-1.0")]
    OdcBy1,
    /// Open Data Commons Open Database License 1.0.
    #[value(name = "ODbL-1.0")]
    Odbl1,
    /// Creative Commons Zero 1.0: no rights reserved.
    #[value(name = "CC0-1.0")]
    Cc01,
    /// Open Data Commons Public Domain Dedication and License 1.0.
    #[value(name = "ODC-PDDL-1.0")]
    OdcPddl1,
}

impl OpenDataLicense {
    /// The licence's SPDX identifier, its title and where its text is.
    fn described(self) -> (&'static str, &'static str, &'static str) {
        match self {
            OpenDataLicense::OglUk3 => (
                "OGL-UK-3.0",
                "Open Government Licence v3.0",
                "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/",
            ),
            OpenDataLicense::CcBy4 => {
                ("CC-BY-4.0", "Creative Commons Attribution 4.0", "https://creativecommons.org/licenses/by/4.0/")
            }
            OpenDataLicense::OdcBy1 => (
                "ODC-BY-1.0",
                "Open Data Commons Attribution License 1.0",
                "https://opendatacommons.org/licenses/by/1-0/",
            ),
            OpenDataLicense::Odbl1 => (
                "ODbL-1.0",
                "Open Data Commons Open Database License 1.0",
                "https://opendatacommons.org/licenses/odbl/1-0/",
            ),
            OpenDataLicense::Cc01 => {
                ("CC0-1.0", "Creative Commons Zero 1.0", "https://creativecommons.org/publicdomain/zero/1.0/")
            }
            OpenDataLicense::OdcPddl1 => (
                "ODC-PDDL-1.0",
                "Open Data Commons Public Domain Dedication and License 1.0",
                "https://opendatacommons.org/licenses/pddl/1-0/",
            ),
        }
    }
}

/// The figures a package holds, all read as of one stream sequence, as the
/// caller may see them.
pub(crate) struct PackageFigures {
    pub movement: String,
    pub weekly: Trend,
    pub monthly: Trend,
    pub cohorts: Cohorts,
    pub principles: Principles,
    /// Counts of people from 1 to this minus one are hidden, when some are.
    pub suppressed_below: Option<u64>,
    pub license: OpenDataLicense,
    pub created: DateTime<Utc>,
}

/// One CSV file of the package: its resource name, title and table.
struct Resource {
    name: &'static str,
    title: &'static str,
    description: String,
    file: TableFile,
}

/// The package's zip: `datapackage.json`, `README.md` and the CSV files.
pub(crate) fn package(figures: &PackageFigures) -> Result<Vec<u8>, PackageError> {
    let resources = resources(figures);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let descriptor = datapackage(figures, &resources);
    zip.start_file("datapackage.json", options)?;
    zip.write_all(&serde_json::to_vec_pretty(&descriptor).expect("a descriptor always serialises"))?;
    zip.start_file("README.md", options)?;
    zip.write_all(readme(figures, &resources).as_bytes())?;
    for resource in resources {
        zip.start_file(format!("{}.csv", resource.name), options)?;
        zip.write_all(&momentum_tables::write(resource.file.table, FileFormat::Csv, resource.file.watermark)?)?;
    }
    Ok(zip.finish()?.into_inner())
}

fn resources(figures: &PackageFigures) -> Vec<Resource> {
    let range = |from: NaiveDate, to: NaiveDate| format!("from {from} to {to}");
    vec![
        Resource {
            name: "trends-weekly",
            title: "Weekly trend",
            description: format!(
                "Every trend metric for each ISO week (Monday to Sunday) {}.",
                range(figures.weekly.from, figures.weekly.to)
            ),
            file: figures.weekly.to_table(Layout::Wide),
        },
        Resource {
            name: "trends-monthly",
            title: "Monthly trend",
            description: format!(
                "Every trend metric for each calendar month {}.",
                range(figures.monthly.from, figures.monthly.to)
            ),
            file: figures.monthly.to_table(Layout::Wide),
        },
        Resource {
            name: "cohorts-monthly",
            title: "Monthly cohorts",
            description: format!(
                "For each month's new participants, how many took part in each later month {}, one row per \
                 cohort and month.",
                range(figures.cohorts.from, figures.cohorts.to)
            ),
            file: figures.cohorts.to_table(Layout::Long),
        },
        Resource {
            name: "principles",
            title: "The eight principles",
            description: format!(
                "Activities tagged with each of the eight principles and their distinct participants, {}.",
                range(figures.principles.from, figures.principles.to)
            ),
            file: figures.principles.to_table(Layout::Wide),
        },
    ]
}

fn datapackage(figures: &PackageFigures, resources: &[Resource]) -> Value {
    let (license, license_title, license_path) = figures.license.described();
    let resources: Vec<Value> = resources
        .iter()
        .map(|resource| {
            json!({
                "name": resource.name,
                "path": format!("{}.csv", resource.name),
                "profile": "tabular-data-resource",
                "title": resource.title,
                "description": resource.description,
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "schema": momentum_tables::frictionless::table_schema(resource.file.table.columns()),
            })
        })
        .collect();
    json!({
        "profile": "tabular-data-package",
        "name": format!("{}-open-data", figures.movement),
        "title": format!("{}: participation figures", figures.movement),
        "description": format!(
            "The participation figures of the community health movement {}, as momentum computed them from \
             the events its partners posted, up to stream sequence {}. README.md defines every figure.",
            figures.movement, figures.monthly.watermark
        ),
        "created": figures.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "licenses": [{ "name": license, "title": license_title, "path": license_path }],
        "keywords": ["health as a social movement", "participation", "volunteering", "community health"],
        "resources": resources,
        "momentum": {
            "watermark": figures.monthly.watermark,
            "suppressed_below": figures.suppressed_below,
            "volunteer_hour_value": figures.monthly.volunteer_hour_value,
        },
    })
}

fn readme(figures: &PackageFigures, resources: &[Resource]) -> String {
    let (_, license_title, license_path) = figures.license.described();
    let hour_value = &figures.monthly.volunteer_hour_value;
    let mut text = format!(
        "# {movement}: participation figures\n\n\
         Open data of the community health movement `{movement}`, computed by momentum from the events its \
         partners posted.\n\n\
         - **As of stream sequence {watermark}** (the watermark): every file holds the figures as they stood \
         when the projection had applied the event log up to that sequence. Events that arrive later, including \
         late events dated in these periods, are not in them.\n\
         - **Created** {created}.\n\
         - **Licence**: {license_title} ({license_path}).\n\
         - **Social value** (`social_value_gbp`): the replacement cost of the volunteer hours at £{value} an \
         hour, basis `{basis}`{year}: {source}. Wellbeing value is never added.\n\
         - **Suppression**: {suppression}\n\n\
         ## Files\n\n",
        movement = figures.movement,
        watermark = figures.monthly.watermark,
        created = figures.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        value = hour_value.value_gbp,
        basis = hour_value.basis.as_str(),
        year = hour_value.basis.year().map(|year| format!(" ({year})")).unwrap_or_default(),
        source = hour_value.basis.source(),
        suppression = match figures.suppressed_below {
            Some(below) => format!(
                "counts of people from 1 to {} are empty cells (zero is shown), and so is every figure that \
                 would give one away: a rate or share over a hidden count, and within a period the smallest \
                 other count that, with those shown, would let a hidden one be worked out. Figures that count \
                 no people (meetings, actions, attendances, hours, pounds, reach) are never hidden.",
                below - 1
            ),
            None => "none: every count is shown.".to_owned(),
        },
    );
    for resource in resources {
        text.push_str(&format!("- `{}.csv`: {} {}\n", resource.name, resource.title, resource.description));
    }
    text.push_str(
        "\n`datapackage.json` describes every column (Frictionless Tabular Data Package). Empty cells are \
         nulls: a ratio with nothing to divide by, or a suppressed count. Periods are named by their first \
         local date; `complete` says whether the period was over when the package was made.\n\n\
         ## Definitions\n\n",
    );
    for heading in PACKAGE_SECTIONS {
        // The reference's sections (and their subsections) go one level
        // down, under "Definitions".
        let section = section(heading);
        text.push('#');
        text.push_str(&section.replace("\n#", "\n##"));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_licence_has_an_identifier_a_title_and_a_link() {
        use clap::ValueEnum;
        for license in OpenDataLicense::value_variants() {
            let (name, title, path) = license.described();
            let named = license.to_possible_value().unwrap();
            assert_eq!(named.get_name(), name, "the setting names the licence by its SPDX id");
            assert!(!title.is_empty() && path.starts_with("https://"));
        }
    }
}
