//! The statistics of a two-group outcome comparison: Wilson intervals, relative risk with
//! its log-scale interval, the risk difference with Newcombe's interval, and a p-value from
//! Fisher's exact test (small expected counts) or the pooled two-proportion z-test.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::factorial::ln_factorial;

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A proportion with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// Units with the outcome.
    pub hits: u64,
    /// Units observed.
    pub total: u64,
    /// hits / total (0 when total is 0).
    pub rate: f64,
    /// Wilson score interval, 95%.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// The Wilson score interval of `hits` of `total` (95%).
pub fn wilson(hits: u64, total: u64) -> Rate {
    if total == 0 {
        return Rate {
            hits,
            total,
            rate: 0.0,
            low: 0.0,
            high: 1.0,
        };
    }
    let n = total as f64;
    let p = hits as f64 / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Rate {
        hits,
        total,
        rate: p,
        low: (center - half).max(0.0),
        high: (center + half).min(1.0),
    }
}

/// A ratio or difference with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Point estimate.
    pub value: f64,
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// How the p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    /// Fisher's exact test, two-sided (some expected cell below 5).
    FisherExact,
    /// Two-proportion z-test with the pooled proportion, two-sided.
    TwoProportionZ,
}

/// Members against non-members.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// Members' outcome rate.
    pub members: Rate,
    /// Non-members' outcome rate.
    pub non_members: Rate,
    /// Members' rate / non-members' rate, with the Katz log interval. None when both
    /// rates are 0 or a group is empty.
    pub relative_risk: Option<Estimate>,
    /// True when a zero cell made the relative risk's interval add 0.5 to every cell.
    pub relative_risk_corrected: bool,
    /// Members' rate − non-members' rate, with Newcombe's hybrid score interval.
    pub difference: Estimate,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Which test gave it.
    pub test: Test,
}

/// Compares `a` hits of `n_a` (members) with `b` of `n_b` (non-members).
pub fn compare(a: u64, n_a: u64, b: u64, n_b: u64) -> Comparison {
    let members = wilson(a, n_a);
    let non_members = wilson(b, n_b);
    let (relative_risk, corrected) = relative_risk(a, n_a, b, n_b);
    let d = members.rate - non_members.rate;
    let difference = Estimate {
        value: d,
        low: d
            - ((members.rate - members.low).powi(2)
                + (non_members.high - non_members.rate).powi(2))
            .sqrt(),
        high: d
            + ((members.high - members.rate).powi(2)
                + (non_members.rate - non_members.low).powi(2))
            .sqrt(),
    };
    let (p_value, test) = p_value(a, n_a, b, n_b);
    Comparison {
        members,
        non_members,
        relative_risk,
        relative_risk_corrected: corrected,
        difference,
        p_value,
        test,
    }
}

fn relative_risk(a: u64, n_a: u64, b: u64, n_b: u64) -> (Option<Estimate>, bool) {
    if n_a == 0 || n_b == 0 || (a == 0 && b == 0) {
        return (None, false);
    }
    let value = if b == 0 {
        f64::INFINITY
    } else {
        (a as f64 / n_a as f64) / (b as f64 / n_b as f64)
    };
    // Katz: se(ln RR) = sqrt(1/a − 1/n_a + 1/b − 1/n_b); with a zero cell, 0.5 is added to
    // every cell (Haldane–Anscombe) so the interval stays finite.
    let corrected = a == 0 || b == 0 || a == n_a || b == n_b;
    let k = if corrected { 0.5 } else { 0.0 };
    let (af, naf) = (a as f64 + k, n_a as f64 + 2.0 * k);
    let (bf, nbf) = (b as f64 + k, n_b as f64 + 2.0 * k);
    let ln_rr = ((af / naf) / (bf / nbf)).ln();
    let se = (1.0 / af - 1.0 / naf + 1.0 / bf - 1.0 / nbf).sqrt();
    (
        Some(Estimate {
            value,
            low: (ln_rr - Z95 * se).exp(),
            high: (ln_rr + Z95 * se).exp(),
        }),
        corrected,
    )
}

/// Fisher's exact test when any expected cell of the 2×2 table is below 5, else the
/// pooled two-proportion z-test; both two-sided.
pub fn p_value(a: u64, n_a: u64, b: u64, n_b: u64) -> (f64, Test) {
    let n = n_a + n_b;
    if n_a == 0 || n_b == 0 {
        return (1.0, Test::FisherExact);
    }
    let hits = a + b;
    let expected_min = [n_a, n_b]
        .iter()
        .flat_map(|&row| {
            [hits, n - hits]
                .into_iter()
                .map(move |col| row as f64 * col as f64 / n as f64)
        })
        .fold(f64::INFINITY, f64::min);
    if expected_min < 5.0 {
        return (fisher_exact(a, n_a - a, b, n_b - b), Test::FisherExact);
    }
    let (pa, pb) = (a as f64 / n_a as f64, b as f64 / n_b as f64);
    let pooled = hits as f64 / n as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n_a as f64 + 1.0 / n_b as f64)).sqrt();
    if se == 0.0 {
        return (1.0, Test::TwoProportionZ);
    }
    let z = (pa - pb) / se;
    let normal = Normal::standard();
    (2.0 * normal.sf(z.abs()), Test::TwoProportionZ)
}

/// Two-sided Fisher exact test of the table [[a, b], [c, d]]: the probability, under the
/// hypergeometric null with the margins fixed, of a table no more likely than the one
/// observed (with the relative tolerance R and SciPy use for ties).
pub fn fisher_exact(a: u64, b: u64, c: u64, d: u64) -> f64 {
    let row1 = a + b;
    let col1 = a + c;
    let n = a + b + c + d;
    let lo = col1.saturating_sub(n - row1);
    let hi = row1.min(col1);
    let ln_p =
        |x: u64| -> f64 { ln_choose(row1, x) + ln_choose(n - row1, col1 - x) - ln_choose(n, col1) };
    let observed = ln_p(a);
    let mut total = 0.0;
    for x in lo..=hi {
        let lp = ln_p(x);
        if lp <= observed + 1e-7_f64.ln_1p() {
            total += lp.exp();
        }
    }
    total.min(1.0)
}

/// Benjamini–Hochberg adjusted p-values (q-values) of `p`, as if `m` hypotheses were tested
/// (m ≥ p.len(); the untested ones count as p = 1).
pub fn benjamini_hochberg(p: &[f64], m: f64) -> Vec<f64> {
    let m = m.max(p.len() as f64);
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![1.0; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m / (rank as f64 + 1.0));
        q[i] = running.min(1.0);
    }
    q
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * b.abs().max(1e-300), "{a} vs {b}");
    }

    /// statsmodels 0.15.0 `proportion_confint(x, n, method="wilson")`.
    #[test]
    fn wilson_matches_statsmodels() {
        for (x, n, lo, hi) in [
            (12, 50, 0.142_973_913_969_917_2, 0.374_126_837_579_429_2),
            (0, 20, 0.0, 0.161_125_158_052_819_4),
            (997, 1000, 0.991_216_985_946_496_9, 0.998_979_216_118_861_4),
            (
                4521,
                140_000,
                0.031_379_617_619_901_85,
                0.033_231_762_786_266_106,
            ),
        ] {
            let r = wilson(x, n);
            assert!((r.low - lo).abs() < 1e-12, "{x}/{n}: {} vs {lo}", r.low);
            close(r.high, hi, 1e-9);
        }
    }

    /// SciPy 1.17.1 `fisher_exact([[a, n_a - a], [b, n_b - b]])` (two-sided).
    #[test]
    fn fisher_exact_matches_scipy() {
        for (a, na, b, nb, p) in [
            (3, 10, 1, 12, 0.293_233_082_706_766_85),
            (0, 8, 5, 9, 0.029_411_764_705_882_353),
            (2, 30, 9, 25, 0.015_018_081_469_069_734),
        ] {
            close(fisher_exact(a, na - a, b, nb - b), p, 1e-9);
        }
        // Expected cells 1.8 and 2.4: the report uses the exact test here.
        assert_eq!(p_value(3, 10, 1, 12).1, Test::FisherExact);
        // Expected cells exactly 5 and above: the z-test.
        assert_eq!(p_value(2, 30, 9, 25).1, Test::TwoProportionZ);
    }

    /// statsmodels 0.15.0 `proportions_ztest([a, b], [n_a, n_b])` (p-value),
    /// `confint_proportions_2indep(a, n_a, b, n_b, method="newcomb")` (difference), and
    /// SciPy 1.17.1 `relative_risk(a, n_a, b, n_b).confidence_interval(0.95)` (Katz).
    #[test]
    fn z_test_newcombe_and_katz_match_statsmodels_and_scipy() {
        for (a, na, b, nb, p, dlo, dhi, rr, rlo, rhi) in [
            (
                120,
                1000,
                200,
                1100,
                8.259_447_044_220_025e-5,
                -0.092_154_898_212_182_4,
                -0.031_213_375_013_014_022,
                0.66,
                0.535_258_902_020_376_7,
                0.813_811_780_347_404_6,
            ),
            (
                4521,
                140_000,
                9000,
                200_000,
                1.028_356_878_493_4e-77,
                -0.014_001_537_306_337_304,
                -0.011_406_668_345_835_069,
                0.717_619_047_619_047_7,
                0.692_888_633_081_235,
                0.743_232_134_167_934_2,
            ),
            (
                40,
                100,
                50,
                100,
                0.155_218_489_684_684_1,
                -0.232_123_054_202_662_77,
                0.037_302_103_215_463_57,
                0.8,
                0.586_817_701_233_813_6,
                1.090_628_313_792_116_2,
            ),
        ] {
            let c = compare(a, na, b, nb);
            assert_eq!(c.test, Test::TwoProportionZ);
            close(c.p_value, p, 1e-6);
            close(c.difference.low, dlo, 1e-9);
            close(c.difference.high, dhi, 1e-9);
            let r = c.relative_risk.unwrap();
            close(r.value, rr, 1e-12);
            close(r.low, rlo, 1e-9);
            close(r.high, rhi, 1e-9);
            assert!(!c.relative_risk_corrected);
        }
    }

    /// statsmodels 0.15.0 `multipletests([0.01, 0.04, 0.03, 0.2], method="fdr_bh")`.
    #[test]
    fn benjamini_hochberg_matches_statsmodels() {
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2], 4.0);
        for (got, want) in q.iter().zip([
            0.04,
            0.053_333_333_333_333_33,
            0.053_333_333_333_333_33,
            0.2,
        ]) {
            close(*got, want, 1e-12);
        }
    }

    #[test]
    fn zero_cells_keep_the_relative_risk_interval_finite() {
        let c = compare(0, 40, 9, 60);
        let r = c.relative_risk.unwrap();
        assert_eq!(r.value, 0.0);
        assert!(c.relative_risk_corrected && r.low > 0.0 && r.high.is_finite() && r.high > r.low);
        assert!(compare(0, 10, 0, 10).relative_risk.is_none());
    }
}
