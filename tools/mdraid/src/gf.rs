//! GF(2^8) arithmetic for RAID-6 as the kernel's lib/raid6 defines it: the
//! field polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d) and the generator
//! g = {02}. P is the XOR of the data blocks, Q = sum over slots i of
//! g^i * D_i (slot numbering: see [`crate::layout::Stripe::q_slot`]).

/// `EXP[i] = g^i` for i in 0..255 (EXP[255] = EXP[0] for convenience).
pub static EXP: [u8; 256] = tables().0;
/// `LOG[x]` for x != 0 (LOG[0] is meaningless and 0).
pub static LOG: [u8; 256] = tables().1;

const fn tables() -> ([u8; 256], [u8; 256]) {
    let mut exp = [0u8; 256];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= 0x11d;
        }
        i += 1;
    }
    exp[255] = exp[0];
    (exp, log)
}

/// a * b in GF(2^8).
pub fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    EXP[(usize::from(LOG[a as usize]) + usize::from(LOG[b as usize])) % 255]
}

/// g^e.
pub fn pow_g(e: u32) -> u8 {
    EXP[(e % 255) as usize]
}

/// 1 / a (a != 0; 0 gives 0).
pub fn inv(a: u8) -> u8 {
    if a == 0 {
        return 0;
    }
    EXP[(255 - usize::from(LOG[a as usize])) % 255]
}

/// Multiplies 8 field elements packed in a u64 by g = {02} at once.
#[inline]
fn mul2_x8(v: u64) -> u64 {
    let hi = v & 0x8080_8080_8080_8080;
    let shifted = (v << 1) & 0xfefe_fefe_fefe_fefe;
    shifted ^ ((hi >> 7) * 0x1d)
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (a, b) in (&mut d).zip(&mut s) {
        let v = u64::from_ne_bytes(a.try_into().unwrap_or([0; 8]))
            ^ u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
        a.copy_from_slice(&v.to_ne_bytes());
    }
    for (a, b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a ^= b;
    }
}

fn mul2_in_place(q: &mut [u8]) {
    let mut c = q.chunks_exact_mut(8);
    for a in &mut c {
        let v = mul2_x8(u64::from_ne_bytes(a.try_into().unwrap_or([0; 8])));
        a.copy_from_slice(&v.to_ne_bytes());
    }
    for a in c.into_remainder() {
        *a = mul(*a, 2);
    }
}

/// P (XOR) of `data` into `p`.
pub fn compute_p(data: &[&[u8]], p: &mut [u8]) {
    match data.split_first() {
        Some((first, rest)) if first.len() == p.len() => {
            p.copy_from_slice(first);
            for d in rest {
                xor_into(p, d);
            }
        }
        _ => {
            p.fill(0);
            for d in data {
                xor_into(p, d);
            }
        }
    }
}

/// Q of `data` into `q`, where data block k sits in slot `slots[k]`
/// (slots need not be contiguous: absent slots count as zero blocks).
/// Horner's rule from the highest slot down: q = q*g + D_slot.
pub fn compute_q(data: &[&[u8]], slots: &[u32], q: &mut [u8]) {
    q.fill(0);
    let Some(&top) = slots.iter().max() else {
        return;
    };
    for slot in (0..=top).rev() {
        mul2_in_place(q);
        for (k, d) in data.iter().enumerate() {
            if slots.get(k) == Some(&slot) {
                xor_into(q, d);
            }
        }
    }
}

/// Rebuilds the data block in slot `xs` (index `x` of `data`) from the
/// other data blocks and P: D_x = P + sum of the others.
pub fn recover_one_from_p(data: &[&[u8]], x: usize, p: &[u8]) -> Vec<u8> {
    let mut out = p.to_vec();
    for (k, d) in data.iter().enumerate() {
        if k != x {
            xor_into(&mut out, d);
        }
    }
    out
}

/// Rebuilds two data blocks (indices `x` and `y`, slots `slots[x]`,
/// `slots[y]`) from the others, P and Q:
/// with Pxy = P + sum of the others and Qxy = Q + sum of g^s*D of the
/// others, D_x = (g^(sy-sx) * Pxy + g^(-sx) * Qxy) / (g^(sy-sx) + 1),
/// D_y = Pxy + D_x.
pub fn recover_two_from_pq(
    data: &[&[u8]],
    slots: &[u32],
    x: usize,
    y: usize,
    p: &[u8],
    q: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let len = p.len();
    let zero = vec![0u8; len];
    let others: Vec<&[u8]> = data
        .iter()
        .enumerate()
        .map(|(k, d)| if k == x || k == y { &zero[..] } else { *d })
        .collect();
    let mut pxy = vec![0u8; len];
    compute_p(&others, &mut pxy);
    xor_into(&mut pxy, p);
    let mut qxy = vec![0u8; len];
    compute_q(&others, slots, &mut qxy);
    xor_into(&mut qxy, q);
    let (sx, sy) = (slots[x], slots[y]);
    let a = pow_g((sy + 255 - sx % 255) % 255);
    let denom_inv = inv(a ^ 1);
    let g_minus_sx = pow_g((255 - sx % 255) % 255);
    let mut dx = vec![0u8; len];
    for i in 0..len {
        dx[i] = mul(mul(a, pxy[i]) ^ mul(g_minus_sx, qxy[i]), denom_inv);
    }
    let dy: Vec<u8> = pxy.iter().zip(&dx).map(|(a, b)| a ^ b).collect();
    (dx, dy)
}

/// RAID-6 diagnosis of one block column: given P and Q syndromes of the
/// stored data XORed with the stored P and Q (`pd`, `qd`), names the single
/// data slot whose corruption explains both, if one does (as mdadm's
/// raid6check does): qd = g^z * pd for every byte.
pub fn single_slot_culprit(pd: &[u8], qd: &[u8]) -> Option<u32> {
    let mut z: Option<u32> = None;
    for (&a, &b) in pd.iter().zip(qd) {
        match (a, b) {
            (0, 0) => continue,
            (0, _) | (_, 0) => return None,
            (a, b) => {
                let zz = (u32::from(LOG[b as usize]) + 255 - u32::from(LOG[a as usize])) % 255;
                if z.is_some_and(|z| z != zz) {
                    return None;
                }
                z = Some(zz);
            }
        }
    }
    z
}
