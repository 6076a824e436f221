//! Kubernetes' `resource.Quantity`: parsing `500m`, `1.5Gi`, `2e3`, `128974848` into an
//! exact fixed-point number (nano precision, magnitude capped at 2^63-1, values rounded up
//! away from zero, as Kubernetes does), canonical printing (`1.5` -> `1500m`, `1.5Gi` ->
//! `1536Mi`), and the checks validation applies to the resources of a container.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use super::{FieldError, Path};

/// Nanos in one unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// The largest magnitude a quantity may hold, in nanos (2^63-1 units).
const MAX_NANOS: i128 = (i64::MAX as i128) * NANOS_PER_UNIT;

/// How a quantity was written, which decides how it is printed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// Powers of ten with SI suffixes: `500m`, `2k`, `1G`.
    DecimalSi,
    /// Powers of 1024: `512Ki`, `1Gi`.
    BinarySi,
    /// Scientific notation: `1e3`, `5E-3`.
    DecimalExponent,
}

/// Why a quantity does not parse. The messages are Kubernetes' own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text is not a number followed by a suffix.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    FormatWrong {
        /// The text given.
        input: String,
    },
    /// The number part has no digit.
    #[error("unable to parse numeric part of quantity")]
    Numeric {
        /// The text given.
        input: String,
    },
    /// The suffix is not one Kubernetes knows (`Kb`, `1K`, `e`).
    #[error("unable to parse quantity's suffix")]
    Suffix {
        /// The suffix found.
        suffix: String,
    },
}

/// An exact quantity: a count of nanos (10^-9 units) and the format it was written in.
///
/// Comparison and equality look at the amount only: `1Ki == 1024`.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::hash::Hash for Quantity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

enum Suffix {
    Decimal(i64),
    Binary(u32),
    Exponent(i64),
}

fn interpret_suffix(suffix: &str) -> Result<Suffix, QuantityError> {
    let decimal = match suffix {
        "" => Some(0),
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(exp) = decimal {
        return Ok(Suffix::Decimal(exp));
    }
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(bits) = binary {
        return Ok(Suffix::Binary(bits));
    }
    let error = || QuantityError::Suffix {
        suffix: suffix.to_owned(),
    };
    match suffix.strip_prefix(['e', 'E']) {
        Some(exp) if !exp.is_empty() => exp
            .parse::<i32>()
            .map(|e| Suffix::Exponent(i64::from(e)))
            .map_err(|_| error()),
        _ => Err(error()),
    }
}

/// `digits` as an integer; callers keep it under 30 digits.
fn digits_value(digits: &[u8]) -> i128 {
    digits
        .iter()
        .fold(0i128, |acc, &d| acc * 10 + i128::from(d - b'0'))
}

impl Quantity {
    /// Parses a quantity as Kubernetes does.
    ///
    /// # Errors
    /// Returns Kubernetes' message when the text is not a quantity.
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        let format_wrong = || QuantityError::FormatWrong {
            input: input.to_owned(),
        };
        let bytes = input.as_bytes();
        if bytes.is_empty() {
            return Err(format_wrong());
        }
        let mut pos = 0;
        let negative = match bytes[0] {
            b'-' => {
                pos += 1;
                true
            }
            b'+' => {
                pos += 1;
                false
            }
            _ => false,
        };
        let take_digits = |from: usize| {
            let len = bytes[from..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            from + len
        };
        let int_end = take_digits(pos);
        let int_digits = &bytes[pos..int_end];
        pos = int_end;
        let mut frac_digits: &[u8] = &[];
        let mut has_dot = false;
        if bytes.get(pos) == Some(&b'.') {
            has_dot = true;
            let frac_end = take_digits(pos + 1);
            frac_digits = &bytes[pos + 1..frac_end];
            pos = frac_end;
        }
        // The suffix: letters from the suffix alphabet, then an optional signed integer.
        let suffix_start = pos;
        while pos < bytes.len() && b"eEinumkKMGTP".contains(&bytes[pos]) {
            pos += 1;
        }
        if pos < bytes.len() && (bytes[pos] == b'-' || bytes[pos] == b'+') {
            pos += 1;
        }
        pos = take_digits(pos);
        if pos != bytes.len() {
            return Err(format_wrong());
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(if has_dot {
                QuantityError::Numeric {
                    input: input.to_owned(),
                }
            } else {
                format_wrong()
            });
        }
        // `input` is ASCII up to here, so slicing at a byte offset is safe.
        let suffix = interpret_suffix(&input[suffix_start..])?;

        let (exp10, bits, format) = match suffix {
            Suffix::Decimal(e) => (e, 0, QuantityFormat::DecimalSi),
            Suffix::Binary(b) => (0, b, QuantityFormat::BinarySi),
            Suffix::Exponent(e) => (e, 0, QuantityFormat::DecimalExponent),
        };
        let mut digits: Vec<u8> = int_digits.iter().chain(frac_digits).copied().collect();
        let leading_zeros = digits.iter().take_while(|&&d| d == b'0').count();
        digits.drain(..leading_zeros);
        let frac_len = i64::try_from(frac_digits.len()).unwrap_or(i64::MAX);
        let exp10 = exp10.saturating_sub(frac_len);
        let magnitude = scale_to_nanos(&digits, exp10, bits);

        let mut format = format;
        if format == QuantityFormat::BinarySi && magnitude > 0 && magnitude < NANOS_PER_UNIT {
            format = QuantityFormat::DecimalSi;
        }
        Ok(Quantity {
            nanos: if negative { -magnitude } else { magnitude },
            format,
        })
    }

    /// A quantity of `millis` thousandths (cpu in millicores), printed in decimal SI.
    pub fn from_millis(millis: i64) -> Self {
        Quantity {
            nanos: i128::from(millis) * 1_000_000,
            format: QuantityFormat::DecimalSi,
        }
    }

    /// A whole quantity (memory in bytes), printed in `format`.
    pub fn from_value(value: i64, format: QuantityFormat) -> Self {
        Quantity {
            nanos: i128::from(value) * NANOS_PER_UNIT,
            format,
        }
    }

    /// An amount given in nanos (10^-9 units: CPU in nanocores), printed in `format`.
    pub fn from_nanos(nanos: i64, format: QuantityFormat) -> Self {
        Quantity {
            nanos: i128::from(nanos),
            format,
        }
    }

    /// The amount in nanos (10^-9 units), exact.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The format it prints in.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// `ceil(q / 10^-9 * 10^-scale)` saturated to `i64`, as Kubernetes' `ScaledValue` rounds up.
    fn scaled_ceil(&self, divisor: i128) -> i64 {
        let quotient = self.nanos.div_euclid(divisor);
        let ceil = if self.nanos.rem_euclid(divisor) == 0 {
            quotient
        } else {
            quotient + 1
        };
        i64::try_from(ceil).unwrap_or(if ceil > 0 { i64::MAX } else { i64::MIN })
    }

    /// The amount in whole units rounded up (memory in bytes), as Kubernetes' `Value()`.
    pub fn value(&self) -> i64 {
        self.scaled_ceil(NANOS_PER_UNIT)
    }

    /// The amount in thousandths rounded up (cpu in millicores), as Kubernetes'
    /// `MilliValue()`; saturates at `i64::MAX`.
    pub fn milli_value(&self) -> i64 {
        self.scaled_ceil(1_000_000)
    }

    /// The canonical text, as a `k8s-openapi` quantity.
    pub fn to_api(&self) -> ApiQuantity {
        ApiQuantity(self.to_string())
    }
}

/// `digits * 10^exp10 * 2^bits` in nanos, rounded up, capped at [`MAX_NANOS`]. `digits`
/// has no leading zero.
fn scale_to_nanos(digits: &[u8], exp10: i64, bits: u32) -> i128 {
    if digits.is_empty() {
        return 0;
    }
    let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    // Integer digits of the value: past 20 it exceeds 2^63 before any binary factor.
    if len.saturating_add(exp10) > 20 {
        return MAX_NANOS;
    }
    let shift = exp10 + 9;
    let nanos = if shift >= 0 {
        // len + shift <= 29 digits: fits an i128.
        let zeros = usize::try_from(shift).unwrap_or(0);
        digits_value(digits) * 10i128.pow(u32::try_from(zeros).unwrap_or(0))
    } else {
        let keep = len + shift;
        if keep <= 0 {
            // Below one nano but not zero: round up to the smallest amount.
            1
        } else {
            let keep = usize::try_from(keep).unwrap_or(0);
            let (kept, dropped) = digits.split_at(keep);
            let rounded_up = dropped.iter().any(|&d| d != b'0');
            digits_value(kept) + i128::from(rounded_up)
        }
    };
    nanos
        .checked_mul(1i128 << bits)
        .map_or(MAX_NANOS, |n| n.min(MAX_NANOS))
}

/// Strips factors of `base` from `value`, returning what is left and how many were removed.
fn remove_factors(mut value: i128, base: i128) -> (i128, u32) {
    let mut times = 0;
    while value != 0 && value % base == 0 {
        value /= base;
        times += 1;
    }
    (value, times)
}

impl fmt::Display for Quantity {
    /// The canonical form: no fractional digits, the largest suffix (exponent) possible,
    /// the sign only when negative.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let magnitude = self.nanos.abs();
        let binary = self.format == QuantityFormat::BinarySi
            && magnitude >= 1024 * NANOS_PER_UNIT
            && magnitude % NANOS_PER_UNIT == 0;
        if binary {
            let (mantissa, times) = remove_factors(magnitude / NANOS_PER_UNIT, 1024);
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                .get(times as usize)
                .copied()
                .unwrap_or("");
            return write!(f, "{sign}{mantissa}{suffix}");
        }
        let (mut mantissa, times) = remove_factors(magnitude, 10);
        // Exponent of the mantissa in units, lowered to a multiple of three.
        let mut exponent = i64::from(times) - 9;
        while exponent.rem_euclid(3) != 0 {
            mantissa *= 10;
            exponent -= 1;
        }
        if self.format == QuantityFormat::DecimalExponent {
            if exponent == 0 {
                return write!(f, "{sign}{mantissa}");
            }
            return write!(f, "{sign}{mantissa}e{exponent}");
        }
        let suffix = match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        write!(f, "{sign}{mantissa}{suffix}")
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl TryFrom<&ApiQuantity> for Quantity {
    type Error = QuantityError;

    fn try_from(value: &ApiQuantity) -> Result<Self, Self::Error> {
        Quantity::parse(&value.0)
    }
}

/// Resource names a container may request without a domain prefix.
const STANDARD_CONTAINER_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

fn validate_resource_name(name: &str, path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for msg in super::names::is_qualified_name(name) {
        errors.push(FieldError::invalid(path, name, msg));
    }
    if !errors.is_empty() {
        return errors;
    }
    let standard = STANDARD_CONTAINER_RESOURCES.contains(&name)
        || name.starts_with("hugepages-")
        || name.contains('/');
    if !standard {
        errors.push(FieldError::invalid(
            path,
            name,
            "must be a standard resource for containers",
        ));
    }
    errors
}

/// Parses each quantity of a resource list, reporting malformed and negative ones at
/// `path[name]`; returns the ones that parsed.
fn parse_resource_list(
    list: Option<&BTreeMap<String, ApiQuantity>>,
    path: &Path,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, Quantity> {
    let mut parsed = BTreeMap::new();
    for (name, quantity) in list.into_iter().flatten() {
        let entry = path.key(name);
        errors.extend(validate_resource_name(name, &entry));
        match Quantity::parse(&quantity.0) {
            Ok(q) if q.is_negative() => errors.push(FieldError::invalid(
                &entry,
                quantity.0.as_str(),
                super::names::IS_NEGATIVE_ERROR,
            )),
            Ok(q) => {
                parsed.insert(name.clone(), q);
            }
            Err(error) => errors.push(FieldError::invalid(
                &entry,
                quantity.0.as_str(),
                error.to_string(),
            )),
        }
    }
    parsed
}

/// Validates a container's `resources`: names, quantities that parse and are not negative,
/// and every request at most its limit
/// (`resources.requests[cpu]: Invalid value: "2": must be less than or equal to cpu limit of 1`).
pub fn validate_resource_requirements(
    requirements: &ResourceRequirements,
    path: &Path,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let limits = parse_resource_list(
        requirements.limits.as_ref(),
        &path.child("limits"),
        &mut errors,
    );
    let requests = parse_resource_list(
        requirements.requests.as_ref(),
        &path.child("requests"),
        &mut errors,
    );
    for (name, request) in &requests {
        if let Some(limit) = limits.get(name) {
            if request > limit {
                errors.push(FieldError::invalid(
                    &path.child("requests").key(name),
                    request.to_string().as_str(),
                    format!("must be less than or equal to {name} limit of {limit}"),
                ));
            }
        } else if name.starts_with("hugepages-") {
            errors.push(FieldError::forbidden(
                &path.child("limits"),
                format!("HugePages require cpu or memory and a limit for {name}"),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn cpu_quantities_convert_to_millicores() {
        assert_eq!(q("500m").milli_value(), 500);
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("0.1").milli_value(), 100);
        assert_eq!(q("2k").milli_value(), 2_000_000);
        assert_eq!(q("100u").milli_value(), 1, "millis round up");
        assert_eq!(q(".5").milli_value(), 500);
        assert_eq!(q("1.").milli_value(), 1000);
    }

    #[test]
    fn memory_quantities_convert_to_bytes() {
        assert_eq!(q("128974848").value(), 128_974_848);
        assert_eq!(q("129e6").value(), 129_000_000);
        assert_eq!(q("129M").value(), 129_000_000);
        assert_eq!(q("123Mi").value(), 123 * 1024 * 1024);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("1.5Gi").value(), 3 << 29);
        assert_eq!(q("2Ei").value(), 2 << 60);
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(q("1.5").value(), 2, "values round up");
        assert_eq!(q("+3T").value(), 3_000_000_000_000);
        assert_eq!(q("-5").value(), -5);
    }

    #[test]
    fn exponent_forms_accept_either_case_and_a_sign() {
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1E3").value(), 1000);
        assert_eq!(q("5e-3").milli_value(), 5);
        assert_eq!(q("1e+3").value(), 1000);
        assert_eq!(q("1e3").format(), QuantityFormat::DecimalExponent);
    }

    #[test]
    fn quantities_print_in_canonical_form() {
        assert_eq!(q("1.5").to_string(), "1500m");
        assert_eq!(q("1.5Gi").to_string(), "1536Mi");
        assert_eq!(q("1000").to_string(), "1k");
        assert_eq!(q("1000m").to_string(), "1");
        assert_eq!(q("1024").to_string(), "1024");
        assert_eq!(q("1024Ki").to_string(), "1Mi");
        assert_eq!(q("0.5Ki").to_string(), "512");
        assert_eq!(q("1e3").to_string(), "1e3");
        assert_eq!(q("1500e0").to_string(), "1500");
        assert_eq!(q("0.1m").to_string(), "100u");
        assert_eq!(q("-1.5").to_string(), "-1500m");
        assert_eq!(q("0").to_string(), "0");
        assert_eq!(q("-0").to_string(), "0");
        assert_eq!(q("00012").to_string(), "12");
    }

    #[test]
    fn precision_below_a_nano_rounds_up_and_huge_values_are_capped() {
        assert_eq!(q("1e-12").nanos(), 1);
        assert_eq!(q("-1e-12").nanos(), -1);
        assert_eq!(q("1e300").value(), i64::MAX);
        assert_eq!(q("99999999999999999999999").value(), i64::MAX);
        assert_eq!(q("8Ei").value(), i64::MAX);
        assert_eq!(q("0.000000000000000000000000000").nanos(), 0);
    }

    #[test]
    fn equal_amounts_compare_equal_across_formats() {
        assert_eq!(q("1Ki"), q("1024"));
        assert!(q("500m") < q("1"));
        assert!(q("1Gi") > q("1G"));
    }

    #[test]
    fn malformed_quantities_are_rejected_with_kubernetes_messages() {
        let format = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
        for bad in [
            "", "abc", "1 Gi", "Gi", "1Gi5x", "--1", "1.2.3", "-", "m", "1Kb",
        ] {
            let error = Quantity::parse(bad).expect_err(bad);
            assert_eq!(error.to_string(), format, "{bad}");
        }
        for bad in ["1K", "1e", "1ki", "1mm", "1e99999999999"] {
            let error = Quantity::parse(bad).expect_err(bad);
            assert_eq!(
                error.to_string(),
                "unable to parse quantity's suffix",
                "{bad}"
            );
        }
        assert_eq!(
            Quantity::parse(".").expect_err(".").to_string(),
            "unable to parse numeric part of quantity"
        );
    }

    #[test]
    fn request_above_limit_is_rejected_with_kubernetes_message() {
        let requirements = ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "cpu".to_owned(),
                ApiQuantity("1".into()),
            )])),
            requests: Some(BTreeMap::from([(
                "cpu".to_owned(),
                ApiQuantity("2".into()),
            )])),
            claims: None,
        };
        let path = Path::new("spec")
            .child("containers")
            .index(0)
            .child("resources");
        let errors = validate_resource_requirements(&requirements, &path);
        assert_eq!(
            errors[0].to_string(),
            r#"spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be less than or equal to cpu limit of 1"#
        );
    }

    #[test]
    fn invalid_and_negative_quantities_are_errors_at_the_resource_path() {
        let requirements = ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                ApiQuantity("lots".into()),
            )])),
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), ApiQuantity("-1".into())),
                ("gpus".to_owned(), ApiQuantity("1".into())),
            ])),
            claims: None,
        };
        let path = Path::new("resources");
        let errors: Vec<String> = validate_resource_requirements(&requirements, &path)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec![
                r#"resources.limits[memory]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#,
                r#"resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0"#,
                r#"resources.requests[gpus]: Invalid value: "gpus": must be a standard resource for containers"#,
            ]
        );
    }

    #[test]
    fn extended_resources_with_a_domain_are_accepted() {
        let requirements = ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "example.com/gpu".to_owned(),
                ApiQuantity("1".into()),
            )])),
            requests: None,
            claims: None,
        };
        assert!(validate_resource_requirements(&requirements, &Path::new("r")).is_empty());
    }

    fn quantity_text() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just(""), Just("-"), Just("+")],
            "[0-9]{0,12}",
            proptest::option::of("[0-9]{0,12}"),
            prop_oneof![
                Just(String::new()),
                Just("n".to_owned()),
                Just("u".to_owned()),
                Just("m".to_owned()),
                Just("k".to_owned()),
                Just("M".to_owned()),
                Just("G".to_owned()),
                Just("T".to_owned()),
                Just("P".to_owned()),
                Just("E".to_owned()),
                Just("Ki".to_owned()),
                Just("Mi".to_owned()),
                Just("Gi".to_owned()),
                Just("Ti".to_owned()),
                Just("Pi".to_owned()),
                Just("Ei".to_owned()),
                (-30i32..30).prop_map(|e| format!("e{e}")),
            ],
        )
            .prop_filter_map("a number needs a digit", |(sign, int, frac, suffix)| {
                let frac_text = frac.map(|f| format!(".{f}")).unwrap_or_default();
                if int.is_empty() && frac_text.len() < 2 {
                    return None;
                }
                Some(format!("{sign}{int}{frac_text}{suffix}"))
            })
    }

    proptest! {
        #[test]
        fn canonical_forms_round_trip(text in quantity_text()) {
            let parsed = Quantity::parse(&text).expect("generated quantities are well formed");
            let canonical = parsed.to_string();
            let reparsed = Quantity::parse(&canonical).expect("canonical forms parse");
            prop_assert_eq!(reparsed.nanos(), parsed.nanos());
            prop_assert_eq!(reparsed.to_string(), canonical);
        }

        #[test]
        fn whole_values_round_trip_through_their_canonical_form(
            value in any::<i64>(),
            binary in any::<bool>(),
        ) {
            let format = if binary { QuantityFormat::BinarySi } else { QuantityFormat::DecimalSi };
            let quantity = Quantity::from_value(value, format);
            let reparsed = Quantity::parse(&quantity.to_string()).expect("canonical forms parse");
            prop_assert_eq!(reparsed.value(), value);
        }

        #[test]
        fn parsing_never_panics(text in any::<String>()) {
            let _ = Quantity::parse(&text);
        }

        #[test]
        fn parsing_quantity_like_text_never_panics(text in "[-+0-9.eEinumkKMGTP]{0,40}") {
            if let Ok(q) = Quantity::parse(&text) {
                let _ = (q.to_string(), q.value(), q.milli_value());
            }
        }
    }
}
