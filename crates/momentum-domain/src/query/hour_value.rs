//! The value of a volunteer hour behind `social_value_gbp`, and where it
//! comes from: a named, cited basis, or a figure the operator set.
//! docs/metrics.md explains each, and why wellbeing value is never added.

use serde::{Deserialize, Serialize};

/// Where the value of a volunteer hour comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HourValueBasis {
    /// The Office for National Statistics' replacement cost of an hour of
    /// formal volunteering in 2012/13: £11.27.
    #[serde(rename = "ons_replacement_cost_2012_13")]
    OnsReplacementCost201213,
    /// The median gross hourly pay excluding overtime of all UK employees
    /// in April 2024 (ONS, Annual Survey of Hours and Earnings): £18.64.
    #[serde(rename = "ashe_median_2024")]
    AsheMedian2024,
    /// A figure the operator set (`MOMENTUM_VOLUNTEER_HOUR_VALUE_GBP`), and
    /// the basis of any answer that does not say (a projector of an earlier
    /// version).
    #[default]
    Custom,
}

impl HourValueBasis {
    /// Every basis, the named ones first.
    pub const ALL: [HourValueBasis; 3] =
        [HourValueBasis::OnsReplacementCost201213, HourValueBasis::AsheMedian2024, HourValueBasis::Custom];

    /// The basis used when the operator names none: the most recent figure.
    pub const DEFAULT: HourValueBasis = HourValueBasis::AsheMedian2024;

    /// The basis's name in settings and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            HourValueBasis::OnsReplacementCost201213 => "ons_replacement_cost_2012_13",
            HourValueBasis::AsheMedian2024 => "ashe_median_2024",
            HourValueBasis::Custom => "custom",
        }
    }

    /// The basis a name stands for; `None` for any other text.
    pub fn parse(text: &str) -> Option<HourValueBasis> {
        HourValueBasis::ALL.into_iter().find(|basis| basis.as_str() == text)
    }

    /// The value of an hour on a named basis, in pounds; `None` for a custom one.
    pub fn value_gbp(self) -> Option<f64> {
        match self {
            HourValueBasis::OnsReplacementCost201213 => Some(11.27),
            HourValueBasis::AsheMedian2024 => Some(18.64),
            HourValueBasis::Custom => None,
        }
    }

    /// The year the figure is of; `None` for a custom one.
    pub fn year(self) -> Option<&'static str> {
        match self {
            HourValueBasis::OnsReplacementCost201213 => Some("2012/13"),
            HourValueBasis::AsheMedian2024 => Some("2024"),
            HourValueBasis::Custom => None,
        }
    }

    /// Where the figure comes from.
    pub fn source(self) -> &'static str {
        match self {
            HourValueBasis::OnsReplacementCost201213 => {
                "ONS, Household Satellite Accounts: Valuing voluntary activity in the UK (2013): £23.9bn for \
                 2.12bn hours of regular formal volunteering in 2012/13, each valued at the median wage of the \
                 closest paid occupation"
            }
            HourValueBasis::AsheMedian2024 => {
                "ONS, Annual Survey of Hours and Earnings, April 2024: median gross hourly pay excluding \
                 overtime, all UK employees"
            }
            HourValueBasis::Custom => "set by the operator of this momentum (MOMENTUM_VOLUNTEER_HOUR_VALUE_GBP)",
        }
    }
}

/// The value of a volunteer hour a read computes `social_value_gbp` with,
/// and its basis. In JSON it also carries the basis's year and source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VolunteerHourValue {
    /// Where the value comes from.
    pub basis: HourValueBasis,
    /// Pounds an hour.
    pub value_gbp: f64,
}

impl VolunteerHourValue {
    /// The value of a named basis; `None` for [`HourValueBasis::Custom`],
    /// which has no value of its own.
    pub fn named(basis: HourValueBasis) -> Option<VolunteerHourValue> {
        Some(VolunteerHourValue { basis, value_gbp: basis.value_gbp()? })
    }

    /// A value the operator set.
    pub fn custom(value_gbp: f64) -> VolunteerHourValue {
        VolunteerHourValue { basis: HourValueBasis::Custom, value_gbp }
    }
}

#[derive(Serialize, Deserialize)]
struct HourValueFields {
    basis: HourValueBasis,
    value_gbp: f64,
    #[serde(default, skip_deserializing)]
    year: Option<&'static str>,
    #[serde(default, skip_deserializing)]
    source: &'static str,
}

impl Serialize for VolunteerHourValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = HourValueFields {
            basis: self.basis,
            value_gbp: self.value_gbp,
            year: self.basis.year(),
            source: self.basis.source(),
        };
        fields.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for VolunteerHourValue {
    /// Reads the basis and the value; the year and the source follow from the basis.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<VolunteerHourValue, D::Error> {
        let fields = HourValueFields::deserialize(deserializer)?;
        Ok(VolunteerHourValue { basis: fields.basis, value_gbp: fields.value_gbp })
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for VolunteerHourValue {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        let text = |description: &str| ObjectBuilder::new().schema_type(Type::String).description(Some(description));
        ObjectBuilder::new()
            .description(Some("The value of a volunteer hour `social_value_gbp` was computed with, and its basis."))
            .property("basis", HourValueBasis::schema())
            .required("basis")
            .property("value_gbp", ObjectBuilder::new().schema_type(Type::Number).description(Some("Pounds an hour.")))
            .required("value_gbp")
            .property(
                "year",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some("The year the figure is of; null for a custom one.")),
            )
            .required("year")
            .property("source", text("Where the figure comes from."))
            .required("source")
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for VolunteerHourValue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_basis_has_its_value_year_and_source_and_reads_back() {
        for basis in HourValueBasis::ALL {
            assert_eq!(HourValueBasis::parse(basis.as_str()), Some(basis));
            assert_eq!(serde_json::to_value(basis).unwrap(), basis.as_str());
            assert_eq!(basis.value_gbp().is_some(), basis.year().is_some());
            assert!(!basis.source().is_empty());
        }
        assert_eq!(HourValueBasis::DEFAULT.value_gbp(), Some(18.64));
        let value = VolunteerHourValue::named(HourValueBasis::OnsReplacementCost201213).unwrap();
        let json = serde_json::to_value(value).unwrap();
        assert_eq!(json["basis"], "ons_replacement_cost_2012_13");
        assert_eq!((json["value_gbp"].as_f64(), json["year"].as_str()), (Some(11.27), Some("2012/13")));
        assert!(json["source"].as_str().unwrap().contains("Satellite"));
        assert_eq!(serde_json::from_value::<VolunteerHourValue>(json).unwrap(), value);
        assert_eq!(VolunteerHourValue::named(HourValueBasis::Custom), None);
    }
}
