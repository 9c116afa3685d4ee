//! How the packed dense layers (`cpu_int8`, `cpu_bf16`) spread their work: the weights come in
//! panels of `2 * COLS` outputs, register blocks hold up to `ROWS` input rows against a panel,
//! and the threads split the panels (decoding steps: few rows) or the rows (the encoder).

use std::ops::Range;

use rayon::prelude::*;

/// Output columns per block of packed weights (one 512-bit register of 32-bit sums).
pub const COLS: usize = 16;
/// Input rows per register block (x 2 column blocks = 12 accumulators).
pub const ROWS: usize = 6;
/// Panels (2 * COLS outputs) per parallel task when there are few rows.
const PANELS_PER_TASK: usize = 32;
/// Input rows per parallel task when there are many (the encoder's 1500 frames).
const ROWS_PER_TASK: usize = 48;

/// The `rows x out_dim` outputs of a layer of `panels` panels: `sums(rows, p, block)` fills a
/// block (`rows.len() * 2 * COLS` sums, input rows `rows`, at most `ROWS`) against panel `p`;
/// `finish(block, rows, p, y)` turns it into outputs in `y`, which holds exactly those rows.
pub fn run_panels<S: Copy + Default + Send + Sync>(
    (rows, out_dim, panels): (usize, usize, usize),
    sums: impl Fn(Range<usize>, usize, &mut [S]) + Sync,
    finish: impl Fn(&[S], Range<usize>, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let width = 2 * COLS;
    let mut y = vec![0.0f32; rows * out_dim];
    if rows == 0 || out_dim == 0 {
        return y;
    }
    if rows <= ROWS {
        let mut blocks = vec![S::default(); panels * rows * width];
        blocks.par_chunks_mut(PANELS_PER_TASK * rows * width).enumerate().for_each(|(t, out)| {
            for (i, out) in out.chunks_exact_mut(rows * width).enumerate() {
                sums(0..rows, t * PANELS_PER_TASK + i, out);
            }
        });
        for (p, block) in blocks.chunks_exact(rows * width).enumerate() {
            finish(block, 0..rows, p, &mut y);
        }
        return y;
    }
    y.par_chunks_mut(ROWS_PER_TASK * out_dim).enumerate().for_each(|(t, y)| {
        let first = t * ROWS_PER_TASK;
        let n = y.len() / out_dim;
        let mut block = vec![S::default(); ROWS * width];
        for r0 in (0..n).step_by(ROWS) {
            let m = ROWS.min(n - r0);
            let rows = first + r0..first + r0 + m;
            let y = &mut y[r0 * out_dim..(r0 + m) * out_dim];
            for p in 0..panels {
                sums(rows.clone(), p, &mut block[..m * width]);
                finish(&block[..m * width], rows.clone(), p, y);
            }
        }
    });
    y
}
