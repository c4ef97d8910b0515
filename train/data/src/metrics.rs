//! Skill scores hydrologists and forecasters read: NSE, KGE, RMSE, MAE,
//! accumulated in one streaming pass (co-moments, as Welford) in f64.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default)]
pub struct Agreement {
    pub n: u64,
    mean_obs: f64,
    mean_sim: f64,
    m2_obs: f64,
    m2_sim: f64,
    co: f64,
    sse: f64,
    sae: f64,
}

/// The scores of one [`Agreement`]. NaN where undefined (e.g. NSE of a
/// constant observed series).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Scores {
    pub n: u64,
    pub nse: f64,
    pub kge: f64,
    pub rmse: f64,
    pub mae: f64,
}

impl Agreement {
    #[inline]
    pub fn push(&mut self, obs: f64, sim: f64) {
        if obs.is_nan() || sim.is_nan() {
            return;
        }
        self.n += 1;
        let n = self.n as f64;
        let d_obs = obs - self.mean_obs;
        self.mean_obs += d_obs / n;
        let d_sim = sim - self.mean_sim;
        self.mean_sim += d_sim / n;
        self.m2_obs += d_obs * (obs - self.mean_obs);
        self.m2_sim += d_sim * (sim - self.mean_sim);
        self.co += d_obs * (sim - self.mean_sim);
        self.sse += (sim - obs) * (sim - obs);
        self.sae += (sim - obs).abs();
    }

    pub fn merge(&mut self, o: &Agreement) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let (na, nb) = (self.n as f64, o.n as f64);
        let n = na + nb;
        let d_obs = o.mean_obs - self.mean_obs;
        let d_sim = o.mean_sim - self.mean_sim;
        self.m2_obs += o.m2_obs + d_obs * d_obs * na * nb / n;
        self.m2_sim += o.m2_sim + d_sim * d_sim * na * nb / n;
        self.co += o.co + d_obs * d_sim * na * nb / n;
        self.mean_obs += d_obs * nb / n;
        self.mean_sim += d_sim * nb / n;
        self.sse += o.sse;
        self.sae += o.sae;
        self.n += o.n;
    }

    pub fn scores(&self) -> Scores {
        let n = self.n as f64;
        let nse = 1.0 - self.sse / self.m2_obs;
        let r = self.co / (self.m2_obs * self.m2_sim).sqrt();
        let alpha = (self.m2_sim / self.m2_obs).sqrt();
        let beta = self.mean_sim / self.mean_obs;
        let kge = 1.0 - ((r - 1.0).powi(2) + (alpha - 1.0).powi(2) + (beta - 1.0).powi(2)).sqrt();
        let finite = |x: f64| if x.is_finite() { x } else { f64::NAN };
        Scores {
            n: self.n,
            nse: finite(nse),
            kge: finite(kge),
            rmse: if self.n > 0 {
                (self.sse / n).sqrt()
            } else {
                f64::NAN
            },
            mae: if self.n > 0 { self.sae / n } else { f64::NAN },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_equal_textbook_formulas() {
        let obs = [1.0, 3.0, 2.0, 5.0, 4.0, 7.0];
        let sim = [1.5, 2.5, 2.0, 4.0, 4.5, 6.0];
        let n = obs.len() as f64;
        let mo = obs.iter().sum::<f64>() / n;
        let ms = sim.iter().sum::<f64>() / n;
        let sst: f64 = obs.iter().map(|o| (o - mo).powi(2)).sum();
        let sse: f64 = obs.iter().zip(&sim).map(|(o, s)| (s - o).powi(2)).sum();
        let sso: f64 = sim.iter().map(|s| (s - ms).powi(2)).sum();
        let cov: f64 = obs.iter().zip(&sim).map(|(o, s)| (o - mo) * (s - ms)).sum();
        let r = cov / (sst * sso).sqrt();
        let kge = 1.0
            - ((r - 1.0).powi(2) + ((sso / sst).sqrt() - 1.0).powi(2) + (ms / mo - 1.0).powi(2))
                .sqrt();
        let (mut a, mut b) = (Agreement::default(), Agreement::default());
        for (i, (o, s)) in obs.iter().zip(&sim).enumerate() {
            if i < 2 {
                a.push(*o, *s)
            } else {
                b.push(*o, *s)
            }
        }
        a.merge(&b);
        a.push(f64::NAN, 1.0);
        let s = a.scores();
        assert_eq!(s.n, 6);
        assert!((s.nse - (1.0 - sse / sst)).abs() < 1e-12);
        assert!((s.kge - kge).abs() < 1e-12);
        assert!((s.rmse - (sse / n).sqrt()).abs() < 1e-12);
        let mae: f64 = obs
            .iter()
            .zip(&sim)
            .map(|(o, s)| (s - o).abs())
            .sum::<f64>()
            / n;
        assert!((s.mae - mae).abs() < 1e-12);
    }

    #[test]
    fn constant_observations_give_nan_not_infinity() {
        let mut a = Agreement::default();
        a.push(2.0, 1.0);
        a.push(2.0, 3.0);
        assert!(a.scores().nse.is_nan());
    }
}
