/* Exact k-nearest-centroid selection per position (Brutzkus et al., ICML 2022, Sec. 5: Phi_hard).
 * Each row of N scores gets a 0/1 mask with exactly k ones: the k smallest by (score, index).
 * Selection: bracket the k-th smallest value by counting passes (interpolation + bisection on
 * the value), then pick exactly among the few candidates left. Every pass is a branch-free,
 * vectorisable loop over a contiguous row; strided (NCHW) inputs are transposed in tiles. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <math.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#define TILE 16
typedef float v16f __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));
#define MAXCAND 16

static inline int count_le(const float *s, int n, float t) {
    int c = 0, j = 0;
    v16i acc = {0};
    for (; j + 16 <= n; j += 16) { v16f v; memcpy(&v, s + j, sizeof(v)); acc -= (v <= t); }
    for (int i = 0; i < 16; i++) c += acc[i];
    for (; j < n; j++) c += (s[j] <= t);
    return c;
}

/* k-th smallest of (value, index) pairs among cv/ci (m entries), by partial selection sort for
 * small m, quickselect otherwise. kk is 1-based. */
static inline int key_less(float a, int ia, float b, int ib) { return a < b || (a == b && ia < ib); }

static void select_kth(float *cv, int *ci, int m, int kk, float *t, int *it) {
    int lo = 0, hi = m - 1, target = kk - 1;
    while (hi - lo > 16) {
        int mid = lo + (hi - lo) / 2;
        float pv = cv[mid]; int pi = ci[mid];
        int i = lo, j = hi;
        while (i <= j) {
            while (key_less(cv[i], ci[i], pv, pi)) i++;
            while (key_less(pv, pi, cv[j], ci[j])) j--;
            if (i <= j) { float tv = cv[i]; cv[i] = cv[j]; cv[j] = tv; int ti = ci[i]; ci[i] = ci[j]; ci[j] = ti; i++; j--; }
        }
        if (target <= j) hi = j; else if (target >= i) lo = i; else { *t = cv[target]; *it = ci[target]; return; }
    }
    for (int a = lo; a <= target; a++) {  /* selection sort of the small range up to target */
        int best = a;
        for (int b = a + 1; b <= hi; b++) if (key_less(cv[b], ci[b], cv[best], ci[best])) best = b;
        float tv = cv[a]; cv[a] = cv[best]; cv[best] = tv; int ti = ci[a]; ci[a] = ci[best]; ci[best] = ti;
    }
    *t = cv[target]; *it = ci[target];
}

/* Threshold (t, it) of one contiguous row: the k-th smallest by (value, index). Returns 1 on NaN. */
static int row_threshold(const float *s, int n, int k, float *t, int *it, float *cv, int *ci, int *mout) {
    float mn = s[0], mx = s[0];
    int nan = 0, j1 = 0;
    if (n >= 16) {  /* GCC vector extensions: lowered to AVX-512 / AVX2 / SSE / scalar as available */
        v16f vmn, vmx; v16i vnan = {0};
        memcpy(&vmn, s, sizeof(vmn)); vmx = vmn;
        for (; j1 + 16 <= n; j1 += 16) {
            v16f v; memcpy(&v, s + j1, sizeof(v));
            v16i a = v < vmn, b = v > vmx;
            vmn = (v16f)(((v16i)v & a) | ((v16i)vmn & ~a)); vmx = (v16f)(((v16i)v & b) | ((v16i)vmx & ~b));
            vnan |= (v != v);
        }
        for (int i = 0; i < 16; i++) { mn = vmn[i] < mn ? vmn[i] : mn; mx = vmx[i] > mx ? vmx[i] : mx; nan |= vnan[i]; }
    }
    for (int j = j1; j < n; j++) { float v = s[j]; mn = v < mn ? v : mn; mx = v > mx ? v : mx; nan |= (v != v); }
    if (nan) return 1;
    float lo = mn, hi = mx;
    int clo = count_le(s, n, lo), chi = n;
    if (clo >= k) {  /* the k-th smallest equals the minimum: the k-th occurrence of it */
        int c = 0;
        for (int j = 0; j < n; j++) if (s[j] == mn && ++c == k) { *t = mn; *it = j; *mout = -1; return 0; }
    }
    if (isfinite(lo) && isfinite(hi)) {
        /* alternate regula falsi (interpolation on the counts) and bisection of the value range */
        for (int iter = 0; iter < 80 && chi - clo > MAXCAND; iter++) {
            float mid = (iter & 1) ? lo + 0.5f * (hi - lo) : lo + (hi - lo) * ((float)(k - clo) / (float)(chi - clo));
            if (!(mid > lo && mid < hi)) mid = lo + 0.5f * (hi - lo);
            if (!(mid > lo && mid < hi)) break;  /* adjacent floats: all candidates equal hi */
            int c = count_le(s, n, mid);
            if (c >= k) { hi = mid; chi = c; } else { lo = mid; clo = c; }
        }
    }
    /* candidates: lo < v <= hi (v <= lo are in, v > hi are out) */
    int m = 0, j0 = 0;
#ifdef __AVX512F__
    {
        __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
        __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), step = _mm512_set1_epi32(16);
        for (; j0 + 16 <= n && m < chi - clo; j0 += 16, idx = _mm512_add_epi32(idx, step)) {
            __m512 v = _mm512_loadu_ps(s + j0);
            __mmask16 in = _mm512_cmp_ps_mask(v, vlo, _CMP_GT_OQ) & _mm512_cmp_ps_mask(v, vhi, _CMP_LE_OQ);
            if (in) {
                _mm512_mask_compressstoreu_ps(cv + m, in, v);
                _mm512_mask_compressstoreu_epi32(ci + m, in, idx);
                m += __builtin_popcount(in);
            }
        }
        if (m >= chi - clo) j0 = n;
    }
#else
    for (; j0 + 16 <= n; j0 += 16) {  /* vectorised test per block of 16, scalar gather only where needed */
        v16f v; memcpy(&v, s + j0, sizeof(v));
        v16i in = (v > lo) & (v <= hi);
        int any = 0;
        for (int i = 0; i < 16; i++) any |= in[i];
        if (any) for (int j = j0; j < j0 + 16; j++) { float v = s[j]; cv[m] = v; ci[m] = j; m += (v > lo) & (v <= hi); }
    }
#endif
    for (int j = j0; j < n; j++) { float v = s[j]; cv[m] = v; ci[m] = j; m += (v > lo) & (v <= hi); }
    select_kth(cv, ci, m, k - clo, t, it);
    *mout = m;
    return 0;
}

/* Row mask: s < t, plus the ties s == t with index <= it (exactly k in all). The ties are among the
 * m candidates (cv, ci) left by row_threshold, or anywhere when m < 0. */
static inline void write_mask(const float *s, int n, float t, int it, const float *cv, const int *ci, int m,
                              float *out) {
    for (int j = 0; j < n; j++) out[j] = (float)(s[j] < t);
    if (m < 0) { for (int j = 0; j <= it; j++) if (s[j] == t) out[j] = 1.0f; }
    else for (int i = 0; i < m; i++) if (cv[i] == t && ci[i] <= it) out[ci[i]] = 1.0f;
}

static inline void add_mask(const float *s, int n, float t, int it, const float *cv, const int *ci, int m,
                            float *acc) {
    for (int j = 0; j < n; j++) acc[j] += (float)(s[j] < t);
    if (m < 0) { for (int j = 0; j <= it; j++) if (s[j] == t) acc[j] += 1.0f; }
    else for (int i = 0; i < m; i++) if (cv[i] == t && ci[i] <= it) acc[ci[i]] += 1.0f;
}

/* ----------------------------------------------------------------- mask over (B, N, L) strided */
typedef struct {
    const float *s; float *out; int64_t B, N, L, sb, sn, sl, ob, on, ol; int k; int64_t t0, t1; int err;
} mask_job;

static void *mask_worker(void *arg) {
    mask_job *J = (mask_job *)arg;
    int N = (int)J->N;
    float *rows = malloc(sizeof(float) * TILE * N), *orow = malloc(sizeof(float) * TILE * N);
    float *cv = malloc(sizeof(float) * (N + 1)); int *ci = malloc(sizeof(int) * (N + 1));
    int64_t tiles_per_b = (J->L + TILE - 1) / TILE;
    for (int64_t tt = J->t0; tt < J->t1; tt++) {
        int64_t b = tt / tiles_per_b, l0 = (tt % tiles_per_b) * TILE;
        int nl = (int)((J->L - l0) < TILE ? (J->L - l0) : TILE);
        const float *sb = J->s + b * J->sb + l0 * J->sl;
        float *obp = J->out + b * J->ob + l0 * J->ol;
        if (J->sn == 1) {  /* rows already contiguous */
            for (int p = 0; p < nl; p++) {
                const float *r = sb + p * J->sl; float t; int it, m;
                if (row_threshold(r, N, J->k, &t, &it, cv, ci, &m)) { J->err = 1; goto done; }
                if (J->on == 1) write_mask(r, N, t, it, cv, ci, m, obp + p * J->ol);
                else { write_mask(r, N, t, it, cv, ci, m, orow); for (int j = 0; j < N; j++) obp[p * J->ol + j * J->on] = orow[j]; }
            }
        } else {
            for (int j = 0; j < N; j++) for (int p = 0; p < nl; p++) rows[p * N + j] = sb[j * J->sn + p * J->sl];
            for (int p = 0; p < nl; p++) {
                float t; int it, m;
                if (row_threshold(rows + p * N, N, J->k, &t, &it, cv, ci, &m)) { J->err = 1; goto done; }
                write_mask(rows + p * N, N, t, it, cv, ci, m, orow + p * N);
            }
            if (J->on == 1) for (int p = 0; p < nl; p++) memcpy(obp + p * J->ol, orow + p * N, sizeof(float) * N);
            else for (int j = 0; j < N; j++) for (int p = 0; p < nl; p++) obp[j * J->on + p * J->ol] = orow[p * N + j];
        }
    }
done:
    free(rows); free(orow); free(cv); free(ci);
    return NULL;
}

int knn_mask_strided(const float *s, float *out, int64_t B, int64_t N, int64_t L, int64_t sb, int64_t sn,
                     int64_t sl, int64_t ob, int64_t on, int64_t ol, int k, int nthreads) {
    int64_t ntiles = B * ((L + TILE - 1) / TILE);
    if (nthreads < 1) nthreads = 1;
    if (nthreads > ntiles) nthreads = (int)(ntiles > 0 ? ntiles : 1);
    mask_job jobs[64]; pthread_t th[64];
    if (nthreads > 64) nthreads = 64;
    for (int i = 0; i < nthreads; i++) {
        mask_job J = {s, out, B, N, L, sb, sn, sl, ob, on, ol, k, ntiles * i / nthreads, ntiles * (i + 1) / nthreads, 0};
        jobs[i] = J;
    }
    for (int i = 1; i < nthreads; i++) pthread_create(&th[i], NULL, mask_worker, &jobs[i]);
    mask_worker(&jobs[0]);
    int err = jobs[0].err;
    for (int i = 1; i < nthreads; i++) { pthread_join(th[i], NULL); err |= jobs[i].err; }
    return err;
}

/* ------------------------------------------- fused mask + average pool, channels-last rows */
/* s: (B, H, W, N) contiguous; out: (B, Hp, Wp, N) contiguous. Window (size, stride), no padding,
 * windows clipped at the border; each cell divided by its clipped area (torch's avg_pool2d with
 * padding 0, ceil_mode). Threads split the (b, ho) output rows. */
typedef struct {
    const float *s; float *out; int64_t B, H, W, N, Hp, Wp; int k, size, stride; int64_t r0, r1; int err;
} pool_job;

static void *pool_worker(void *arg) {
    pool_job *J = (pool_job *)arg;
    int N = (int)J->N;
    float *cv = malloc(sizeof(float) * (N + 1)); int *ci = malloc(sizeof(int) * (N + 1));
    float *mrow = malloc(sizeof(float) * N);
    for (int64_t r = J->r0; r < J->r1; r++) {
        int64_t b = r / J->Hp, ho = r % J->Hp;
        int64_t h0 = ho * J->stride, h1 = h0 + J->size < J->H ? h0 + J->size : J->H;
        float *orow = J->out + (b * J->Hp + ho) * J->Wp * N;
        memset(orow, 0, sizeof(float) * J->Wp * N);
        for (int64_t h = h0; h < h1; h++) {
            for (int64_t w = 0; w < J->W; w++) {
                int64_t wo_lo = w < J->size ? 0 : (w - J->size) / J->stride + 1;
                int64_t wo_hi = w / J->stride < J->Wp - 1 ? w / J->stride : J->Wp - 1;
                if (wo_lo > wo_hi) continue;
                const float *row = J->s + ((b * J->H + h) * J->W + w) * N;
                float t; int it, m;
                if (row_threshold(row, N, J->k, &t, &it, cv, ci, &m)) { J->err = 1; goto done; }
                if (wo_lo == wo_hi) add_mask(row, N, t, it, cv, ci, m, orow + wo_lo * N);
                else {
                    write_mask(row, N, t, it, cv, ci, m, mrow);
                    for (int64_t wo = wo_lo; wo <= wo_hi; wo++) { float *o = orow + wo * N; for (int j = 0; j < N; j++) o[j] += mrow[j]; }
                }
            }
        }
        for (int64_t wo = 0; wo < J->Wp; wo++) {
            int64_t w0 = wo * J->stride, w1 = w0 + J->size < J->W ? w0 + J->size : J->W;
            float div = (float)((h1 - h0) * (w1 - w0));
            float *o = orow + wo * N;
            for (int j = 0; j < N; j++) o[j] = o[j] / div;
        }
    }
done:
    free(cv); free(ci); free(mrow);
    return NULL;
}

int knn_pool_cl(const float *s, float *out, int64_t B, int64_t H, int64_t W, int64_t N, int k, int size,
                int stride, int64_t Hp, int64_t Wp, int nthreads) {
    int64_t rows = B * Hp;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > rows) nthreads = (int)(rows > 0 ? rows : 1);
    if (nthreads > 64) nthreads = 64;
    pool_job jobs[64]; pthread_t th[64];
    for (int i = 0; i < nthreads; i++) {
        pool_job J = {s, out, B, H, W, N, Hp, Wp, k, size, stride, rows * i / nthreads, rows * (i + 1) / nthreads, 0};
        jobs[i] = J;
    }
    for (int i = 1; i < nthreads; i++) pthread_create(&th[i], NULL, pool_worker, &jobs[i]);
    pool_worker(&jobs[0]);
    int err = jobs[0].err;
    for (int i = 1; i < nthreads; i++) { pthread_join(th[i], NULL); err |= jobs[i].err; }
    return err;
}

/* ------------------------------------------------ bit-packed masks (Phi_full, issue 12 sec. 4) */
/* Bit j of row r is bit (j & 7) of byte r * NB + (j >> 3), NB = ceil(N / 8) (numpy's
 * packbits(bitorder="little") layout). */
typedef struct { const float *s; uint8_t *bits; int64_t N; int k; int64_t r0, r1; int err; } bits_job;

static void *bits_worker(void *arg) {
    bits_job *J = (bits_job *)arg;
    int N = (int)J->N, NB = (N + 7) / 8;
    float *cv = malloc(sizeof(float) * (N + 1)); int *ci = malloc(sizeof(int) * (N + 1));
    float *mrow = malloc(sizeof(float) * (N + 8));
    for (int64_t r = J->r0; r < J->r1; r++) {
        const float *row = J->s + r * J->N; float t; int it, m;
        if (row_threshold(row, N, J->k, &t, &it, cv, ci, &m)) { J->err = 1; break; }
        write_mask(row, N, t, it, cv, ci, m, mrow);
        for (int j = N; j < NB * 8; j++) mrow[j] = 0.0f;
        uint8_t *o = J->bits + r * NB;
        for (int i = 0; i < NB; i++) {
            unsigned v = 0;
            for (int b = 0; b < 8; b++) v |= (unsigned)(mrow[8 * i + b] != 0.0f) << b;
            o[i] = (uint8_t)v;
        }
    }
    free(cv); free(ci); free(mrow);
    return NULL;
}

/* The k-nearest mask of R contiguous rows of N scores, bit-packed into R x ceil(N / 8) bytes. */
int knn_bits_rows(const float *s, uint8_t *bits, int64_t R, int64_t N, int k, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (nthreads > R) nthreads = (int)(R > 0 ? R : 1);
    if (nthreads > 64) nthreads = 64;
    bits_job jobs[64]; pthread_t th[64];
    for (int i = 0; i < nthreads; i++) { bits_job J = {s, bits, N, k, R * i / nthreads, R * (i + 1) / nthreads, 0}; jobs[i] = J; }
    for (int i = 1; i < nthreads; i++) pthread_create(&th[i], NULL, bits_worker, &jobs[i]);
    bits_worker(&jobs[0]);
    int err = jobs[0].err;
    for (int i = 1; i < nthreads; i++) { pthread_join(th[i], NULL); err |= jobs[i].err; }
    return err;
}

/* ------------------------------------- cached pooled Phi_hard: counts back to floats (issue 12) */
/* out[i, c, j] = (float)data[idx[i], c, j] / area[c]: the pooled features of image row idx[i] of the
 * cache (cells c of N counts each), divided as knn_pool_cl divides. */
typedef struct { const uint8_t *data; const int64_t *idx; int64_t cells, N; const float *area; float *out; int64_t i0, i1; } dec_job;

static void *dec_worker(void *arg) {
    dec_job *J = (dec_job *)arg;
    for (int64_t i = J->i0; i < J->i1; i++) {
        const uint8_t *src = J->data + J->idx[i] * J->cells * J->N;
        float *o = J->out + i * J->cells * J->N;
        for (int64_t c = 0; c < J->cells; c++) {
            float a = J->area[c];
            for (int64_t j = 0; j < J->N; j++) o[c * J->N + j] = (float)src[c * J->N + j] / a;
        }
    }
    return NULL;
}

void decode_counts_u8(const uint8_t *data, const int64_t *idx, int64_t B, int64_t cells, int64_t N, const float *area,
                      float *out, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (nthreads > B) nthreads = (int)(B > 0 ? B : 1);
    if (nthreads > 64) nthreads = 64;
    dec_job jobs[64]; pthread_t th[64];
    for (int i = 0; i < nthreads; i++) { dec_job J = {data, idx, cells, N, area, out, B * i / nthreads, B * (i + 1) / nthreads}; jobs[i] = J; }
    for (int i = 1; i < nthreads; i++) pthread_create(&th[i], NULL, dec_worker, &jobs[i]);
    dec_worker(&jobs[0]);
    for (int i = 1; i < nthreads; i++) pthread_join(th[i], NULL);
}
