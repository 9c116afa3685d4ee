//! Inverse of the unconstrained rational-quadratic spline with linear tails (Durkan et al.,
//! "Neural Spline Flows"; `transforms.py` of VITS), for one value. Computed in f32 like the
//! reference so that durations round the same way.

const MIN_BIN_WIDTH: f32 = 1e-3;
const MIN_BIN_HEIGHT: f32 = 1e-3;
const MIN_DERIVATIVE: f32 = 1e-3;

fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// Bin edges from unnormalised sizes: softmax, floor at `min`, scaled to `[-bound, bound]`.
fn knots(unnormalized: &[f32], min: f32, bound: f32) -> Vec<f32> {
    let max = unnormalized.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = unnormalized.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    let n = unnormalized.len();
    let mut edges = Vec::with_capacity(n + 1);
    edges.push(0.0f32);
    let mut acc = 0.0f32;
    for e in &exps {
        acc += min + (1.0 - min * n as f32) * (e / sum);
        edges.push(acc);
    }
    for e in edges.iter_mut() {
        *e = 2.0 * bound * *e - bound;
    }
    edges[0] = -bound;
    edges[n] = bound;
    edges
}

/// `unnormalized_derivatives` has one value fewer than the bins (inner knots); the outer knots
/// get derivative 1 so the spline joins the identity tails smoothly.
pub fn inverse_rq_spline(y: f32, widths: &[f32], heights: &[f32], inner_derivatives: &[f32], bound: f32) -> f32 {
    if !(-bound..=bound).contains(&y) {
        return y;
    }
    let cum_w = knots(widths, MIN_BIN_WIDTH, bound);
    let cum_h = knots(heights, MIN_BIN_HEIGHT, bound);
    let n = widths.len();
    let mut derivs = Vec::with_capacity(n + 1);
    derivs.push(1.0f32);
    derivs.extend(inner_derivatives.iter().map(|&d| MIN_DERIVATIVE + softplus(d)));
    derivs.push(1.0f32);
    // Edge value of derivative is MIN_DERIVATIVE + softplus(ln(e^(1-MIN)-1)) = 1 up to rounding.
    let edge = MIN_DERIVATIVE + softplus(((1.0 - MIN_DERIVATIVE).exp() - 1.0).ln());
    derivs[0] = edge;
    derivs[n] = edge;

    let mut bin = 0usize;
    for (k, &edge) in cum_h.iter().enumerate() {
        let edge = if k == n { edge + 1e-6 } else { edge };
        if y >= edge {
            bin = k;
        }
    }
    let bin = bin.min(n - 1);
    let (x_k, w_k) = (cum_w[bin], cum_w[bin + 1] - cum_w[bin]);
    let (y_k, h_k) = (cum_h[bin], cum_h[bin + 1] - cum_h[bin]);
    let delta = h_k / w_k;
    let (d_k, d_k1) = (derivs[bin], derivs[bin + 1]);

    let dy = y - y_k;
    let a = dy * (d_k + d_k1 - 2.0 * delta) + h_k * (delta - d_k);
    let b = h_k * d_k - dy * (d_k + d_k1 - 2.0 * delta);
    let c = -delta * dy;
    let disc = (b * b - 4.0 * a * c).max(0.0);
    let root = (2.0 * c) / (-b - disc.sqrt());
    root * w_k + x_k
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forward spline of the same parameters, to check that the inverse undoes it.
    fn forward(x: f32, w: &[f32], h: &[f32], d: &[f32], bound: f32) -> f32 {
        let cw = knots(w, MIN_BIN_WIDTH, bound);
        let ch = knots(h, MIN_BIN_HEIGHT, bound);
        let n = w.len();
        let mut der = vec![1.0f32];
        der.extend(d.iter().map(|&v| MIN_DERIVATIVE + softplus(v)));
        der.push(1.0);
        let bin = (0..n).rev().find(|&k| x >= cw[k]).unwrap_or(0);
        let (wk, hk) = (cw[bin + 1] - cw[bin], ch[bin + 1] - ch[bin]);
        let delta = hk / wk;
        let theta = (x - cw[bin]) / wk;
        let tt = theta * (1.0 - theta);
        let num = hk * (delta * theta * theta + der[bin] * tt);
        let den = delta + (der[bin] + der[bin + 1] - 2.0 * delta) * tt;
        ch[bin] + num / den
    }

    #[test]
    fn inverse_undoes_forward_and_tails_are_identity() {
        let w = [0.3, -1.0, 0.5, 2.0, 0.0, 0.1, -0.4, 1.2, 0.7, -0.2];
        let h = [1.0, 0.2, -0.3, 0.0, 0.4, -1.1, 0.9, 0.3, 0.0, 0.5];
        let d = [0.1, -0.5, 1.0, 0.3, 0.0, -0.2, 0.8, 0.4, -1.0];
        for x in [-4.9f32, -2.0, -0.3, 0.0, 1.7, 4.2] {
            let y = forward(x, &w, &h, &d, 5.0);
            let back = inverse_rq_spline(y, &w, &h, &d, 5.0);
            assert!((back - x).abs() < 1e-4, "x {x} y {y} back {back}");
        }
        assert_eq!(inverse_rq_spline(7.5, &w, &h, &d, 5.0), 7.5);
    }
}
