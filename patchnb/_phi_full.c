/* Phi_full (Brutzkus et al., ICML 2022, Sec. 5) on a bit-packed k-nearest mask (issue 12, sec. 4):
 * average pooling of the masked conv output and its gradient, the conv itself fused in
 * (conv_mask_pool_cl) or given as channels-last rows (mask_pool_cl). Compiled with _knn.c into one
 * library (patchnb/embedding/__init__.py); the mask layout is knn_bits_rows's: bit j of a position's
 * row is bit (j & 7) of byte j >> 3. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

typedef float v16f __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

/* acc[j] += bit j of bits ? y[j] : +0 (no multiplication: an infinite y never becomes NaN) */
static inline void add_selected(const float *y, const uint8_t *bits, int N, float *acc) {
    int j = 0;
    const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    for (; j + 16 <= N; j += 16) {
        int w16 = bits[j >> 3] | (bits[(j >> 3) + 1] << 8);
        v16i m = -(((v16i){0} + w16) >> lane & 1);
        v16i yv; memcpy(&yv, y + j, sizeof(yv));
        v16f a; memcpy(&a, acc + j, sizeof(a));
        a += (v16f)(yv & m);
        memcpy(acc + j, &a, sizeof(a));
    }
    for (; j < N; j++) if ((bits[j >> 3] >> (j & 7)) & 1) acc[j] += y[j];
}

static inline void pool_range(int64_t i, int64_t size, int64_t stride, int64_t np, int64_t *lo, int64_t *hi) {
    *lo = i < size ? 0 : (i - size) / stride + 1;
    *hi = i / stride < np - 1 ? i / stride : np - 1;
}

typedef struct {
    const float *y; const uint8_t *bits; float *out; int64_t B, H, W, N, Hp, Wp; int size, stride; int64_t r0, r1;
} mpool_job;

static void *mpool_worker(void *arg) {
    mpool_job *J = (mpool_job *)arg;
    int N = (int)J->N, NB = (N + 7) / 8;
    for (int64_t r = J->r0; r < J->r1; r++) {
        int64_t b = r / J->Hp, ho = r % J->Hp;
        int64_t h0 = ho * J->stride, h1 = h0 + J->size < J->H ? h0 + J->size : J->H;
        for (int64_t wo = 0; wo < J->Wp; wo++) {
            int64_t w0 = wo * J->stride, w1 = w0 + J->size < J->W ? w0 + J->size : J->W;
            float *o = J->out + ((b * J->Hp + ho) * J->Wp + wo) * N;
            memset(o, 0, sizeof(float) * N);
            for (int64_t h = h0; h < h1; h++)
                for (int64_t w = w0; w < w1; w++) {
                    int64_t p = (b * J->H + h) * J->W + w;
                    add_selected(J->y + p * N, J->bits + p * NB, N, o);
                }
            float div = (float)((h1 - h0) * (w1 - w0));
            for (int j = 0; j < N; j++) o[j] = o[j] / div;
        }
    }
    return NULL;
}

/* avg_pool2d(mask * y) on channels-last rows: y (B, H, W, N) floats, bits (B, H, W) rows of packed
 * mask, out (B, Hp, Wp, N); windows (size, stride), no padding, clipped at the border, each cell
 * divided by its clipped area (torch's avg_pool2d with padding 0). Summed in window order. */
void mask_pool_cl(const float *y, const uint8_t *bits, float *out, int64_t B, int64_t H, int64_t W, int64_t N,
                  int size, int stride, int64_t Hp, int64_t Wp, int nthreads) {
    int64_t rows = B * Hp;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > rows) nthreads = (int)(rows > 0 ? rows : 1);
    if (nthreads > 64) nthreads = 64;
    mpool_job jobs[64]; pthread_t th[64];
    for (int i = 0; i < nthreads; i++) {
        mpool_job J = {y, bits, out, B, H, W, N, Hp, Wp, size, stride, rows * i / nthreads, rows * (i + 1) / nthreads};
        jobs[i] = J;
    }
    for (int i = 1; i < nthreads; i++) pthread_create(&th[i], NULL, mpool_worker, &jobs[i]);
    mpool_worker(&jobs[0]);
    for (int i = 1; i < nthreads; i++) pthread_join(th[i], NULL);
}

typedef struct {
    const float *go; const uint8_t *bits; float *gy; int64_t B, H, W, N, Hp, Wp; int size, stride; int64_t r0, r1;
} mpoolb_job;

static void *mpoolb_worker(void *arg) {
    mpoolb_job *J = (mpoolb_job *)arg;
    int N = (int)J->N, NB = (N + 7) / 8;
    float *acc = malloc(sizeof(float) * N);
    for (int64_t r = J->r0; r < J->r1; r++) {
        int64_t b = r / J->H, h = r % J->H, hlo, hhi;
        pool_range(h, J->size, J->stride, J->Hp, &hlo, &hhi);
        for (int64_t w = 0; w < J->W; w++) {
            int64_t wlo, whi, p = (b * J->H + h) * J->W + w;
            pool_range(w, J->size, J->stride, J->Wp, &wlo, &whi);
            memset(acc, 0, sizeof(float) * N);
            for (int64_t ho = hlo; ho <= hhi; ho++) {
                int64_t h0 = ho * J->stride, h1 = h0 + J->size < J->H ? h0 + J->size : J->H;
                for (int64_t wo = wlo; wo <= whi; wo++) {
                    int64_t w0 = wo * J->stride, w1 = w0 + J->size < J->W ? w0 + J->size : J->W;
                    float div = (float)((h1 - h0) * (w1 - w0));
                    const float *g = J->go + ((b * J->Hp + ho) * J->Wp + wo) * N;
                    for (int j = 0; j < N; j++) acc[j] += g[j] / div;
                }
            }
            float *o = J->gy + p * N;
            const uint8_t *bt = J->bits + p * NB;
            memset(o, 0, sizeof(float) * N);
            add_selected(acc, bt, N, o);
        }
    }
    free(acc);
    return NULL;
}

/* The gradient of mask_pool_cl with respect to y: gy[b, h, w, j] = bit ? sum over the cells whose
 * window holds (h, w) of go[b, cell, j] / area(cell) : 0. go (B, Hp, Wp, N), gy (B, H, W, N). */
void mask_pool_backward_cl(const float *go, const uint8_t *bits, float *gy, int64_t B, int64_t H, int64_t W,
                           int64_t N, int size, int stride, int64_t Hp, int64_t Wp, int nthreads) {
    int64_t rows = B * H;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > rows) nthreads = (int)(rows > 0 ? rows : 1);
    if (nthreads > 64) nthreads = 64;
    mpoolb_job jobs[64]; pthread_t th[64];
    for (int i = 0; i < nthreads; i++) {
        mpoolb_job J = {go, bits, gy, B, H, W, N, Hp, Wp, size, stride, rows * i / nthreads, rows * (i + 1) / nthreads};
        jobs[i] = J;
    }
    for (int i = 1; i < nthreads; i++) pthread_create(&th[i], NULL, mpoolb_worker, &jobs[i]);
    mpoolb_worker(&jobs[0]);
    for (int i = 1; i < nthreads; i++) pthread_join(th[i], NULL);
}

/* ------------------------------ Phi_full: conv + mask + average pool in one pass (N % 16 == 0) */
/* rows (B H W, D): the patches (unfold), wt (D, N): the conv weight transposed, bias (N), bits the
 * packed mask of every position. out[b, ho, wo, q] = (sum over the clipped window of
 * (mask ? bias_q + sum_d rows[l, d] wt[d, q] : 0)) / area, the conv computed only here, never stored.
 * Threads split the blocks of 16 centroids, so each writes its own columns. */
typedef struct {
    const float *rows, *wt, *bias; const uint8_t *bits; float *out; int64_t B, H, W, N, D, Hp, Wp;
    int size, stride; int64_t q0, q1;
} cmp_job;

static inline v16i bits16(const uint8_t *b) {  /* the 16 mask bits at b as lanes of -1 / 0 */
    const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    int w16 = b[0] | (b[1] << 8);
    return -(((v16i){0} + w16) >> lane & 1);
}

static void *cmp_worker(void *arg) {
    cmp_job *J = (cmp_job *)arg;
    int64_t N = J->N, D = J->D, NB = N / 8;
    int64_t *pos = malloc(sizeof(int64_t) * (J->size * J->size + 4));
    for (int64_t qb = J->q0; qb < J->q1; qb++) {
        int64_t q = qb * 16;
        v16f bv; memcpy(&bv, J->bias + q, sizeof(bv));
        for (int64_t cell = 0; cell < J->B * J->Hp * J->Wp; cell++) {
            int64_t b = cell / (J->Hp * J->Wp), ho = (cell / J->Wp) % J->Hp, wo = cell % J->Wp;
            int64_t h0 = ho * J->stride, h1 = h0 + J->size < J->H ? h0 + J->size : J->H;
            int64_t w0 = wo * J->stride, w1 = w0 + J->size < J->W ? w0 + J->size : J->W;
            int np = 0;
            for (int64_t h = h0; h < h1; h++) for (int64_t w = w0; w < w1; w++) pos[np++] = (b * J->H + h) * J->W + w;
            v16f acc = {0};
            int i = 0;
            for (; i + 4 <= np; i += 4) {
                const float *x0 = J->rows + pos[i] * D, *x1 = J->rows + pos[i + 1] * D;
                const float *x2 = J->rows + pos[i + 2] * D, *x3 = J->rows + pos[i + 3] * D;
                v16f y0 = bv, y1 = bv, y2 = bv, y3 = bv;
                for (int64_t d = 0; d < D; d++) {
                    v16f wv; memcpy(&wv, J->wt + d * N + q, sizeof(wv));
                    y0 += x0[d] * wv; y1 += x1[d] * wv; y2 += x2[d] * wv; y3 += x3[d] * wv;
                }
                acc += (v16f)((v16i)y0 & bits16(J->bits + pos[i] * NB + q / 8));
                acc += (v16f)((v16i)y1 & bits16(J->bits + pos[i + 1] * NB + q / 8));
                acc += (v16f)((v16i)y2 & bits16(J->bits + pos[i + 2] * NB + q / 8));
                acc += (v16f)((v16i)y3 & bits16(J->bits + pos[i + 3] * NB + q / 8));
            }
            for (; i < np; i++) {
                const float *x0 = J->rows + pos[i] * D;
                v16f y0 = bv;
                for (int64_t d = 0; d < D; d++) { v16f wv; memcpy(&wv, J->wt + d * N + q, sizeof(wv)); y0 += x0[d] * wv; }
                acc += (v16f)((v16i)y0 & bits16(J->bits + pos[i] * NB + q / 8));
            }
            acc = acc / (float)((h1 - h0) * (w1 - w0));
            memcpy(J->out + cell * N + q, &acc, sizeof(acc));
        }
    }
    free(pos);
    return NULL;
}

void conv_mask_pool_cl(const float *rows, const float *wt, const float *bias, const uint8_t *bits, float *out,
                       int64_t B, int64_t H, int64_t W, int64_t N, int64_t D, int size, int stride, int64_t Hp,
                       int64_t Wp, int nthreads) {
    int64_t blocks = N / 16;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > blocks) nthreads = (int)(blocks > 0 ? blocks : 1);
    if (nthreads > 64) nthreads = 64;
    cmp_job jobs[64]; pthread_t th[64];
    for (int i = 0; i < nthreads; i++) {
        cmp_job J = {rows, wt, bias, bits, out, B, H, W, N, D, Hp, Wp, size, stride, blocks * i / nthreads,
                     blocks * (i + 1) / nthreads};
        jobs[i] = J;
    }
    for (int i = 1; i < nthreads; i++) pthread_create(&th[i], NULL, cmp_worker, &jobs[i]);
    cmp_worker(&jobs[0]);
    for (int i = 1; i < nthreads; i++) pthread_join(th[i], NULL);
}

/* Its backward for the weights: with g[l, q] = mask ? sum over the cells holding l of
 * go[b, cell, q] / area(cell) : 0 (the gradient of the conv output), gwt[d, q] += sum_l rows[l, d]
 * g[l, q] and gb[q] += sum_l g[l, q] (accumulated into gwt (D, N) and gb (N)). */
typedef struct {
    const float *rows, *go; const uint8_t *bits; float *gwt, *gb; int64_t B, H, W, N, D, Hp, Wp;
    int size, stride; int64_t q0, q1;
} cmpb_job;

/* the cells whose window holds each position: cells of position p are off/div[cs[p] .. cs[p + 1]) */
static int64_t cell_lists(const cmpb_job *J, int64_t *cs, int64_t *off, float *div) {
    int64_t p = 0, c = 0;
    for (int64_t b = 0; b < J->B; b++) for (int64_t h = 0; h < J->H; h++) for (int64_t w = 0; w < J->W; w++, p++) {
        int64_t hlo, hhi, wlo, whi;
        pool_range(h, J->size, J->stride, J->Hp, &hlo, &hhi);
        pool_range(w, J->size, J->stride, J->Wp, &wlo, &whi);
        cs[p] = c;
        for (int64_t ho = hlo; ho <= hhi; ho++) {
            int64_t h0 = ho * J->stride, h1 = h0 + J->size < J->H ? h0 + J->size : J->H;
            for (int64_t wo = wlo; wo <= whi; wo++) {
                int64_t w0 = wo * J->stride, w1 = w0 + J->size < J->W ? w0 + J->size : J->W;
                off[c] = ((b * J->Hp + ho) * J->Wp + wo) * J->N;
                div[c++] = (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
    cs[p] = c;
    return c;
}

static inline v16f grad_at(const cmpb_job *J, const int64_t *cs, const int64_t *off, const float *div, int64_t p,
                           int64_t q) {
    v16f g = {0};
    for (int64_t c = cs[p]; c < cs[p + 1]; c++) {
        v16f gv; memcpy(&gv, J->go + off[c] + q, sizeof(gv));
        g += gv / div[c];
    }
    return (v16f)((v16i)g & bits16(J->bits + p * (J->N / 8) + q / 8));
}

static void *cmpb_worker(void *arg) {
    cmpb_job *J = (cmpb_job *)arg;
    int64_t N = J->N, D = J->D, P = J->B * J->H * J->W;
    int64_t per = (J->size + J->stride - 1) / J->stride + 1;  /* cells per position along one axis, at most */
    int64_t *cs = malloc(sizeof(int64_t) * (P + 1)), *off = malloc(sizeof(int64_t) * (P * per * per + 1));
    float *div = malloc(sizeof(float) * (P * per * per + 1));
    v16f *acc = aligned_alloc(64, sizeof(v16f) * D);  /* the vector type is 64-byte aligned */
    cell_lists(J, cs, off, div);
    for (int64_t qb = J->q0; qb < J->q1; qb++) {
        int64_t q = qb * 16;
        for (int64_t d = 0; d < D; d++) memcpy(&acc[d], J->gwt + d * N + q, sizeof(v16f));
        v16f gb; memcpy(&gb, J->gb + q, sizeof(gb));
        int64_t p = 0;
        for (; p + 4 <= P; p += 4) {
            v16f g0 = grad_at(J, cs, off, div, p, q), g1 = grad_at(J, cs, off, div, p + 1, q);
            v16f g2 = grad_at(J, cs, off, div, p + 2, q), g3 = grad_at(J, cs, off, div, p + 3, q);
            const float *x0 = J->rows + p * D, *x1 = x0 + D, *x2 = x1 + D, *x3 = x2 + D;
            for (int64_t d = 0; d < D; d++) acc[d] += x0[d] * g0 + x1[d] * g1 + x2[d] * g2 + x3[d] * g3;
            gb += g0 + g1 + g2 + g3;
        }
        for (; p < P; p++) {
            v16f g0 = grad_at(J, cs, off, div, p, q);
            const float *x0 = J->rows + p * D;
            for (int64_t d = 0; d < D; d++) acc[d] += x0[d] * g0;
            gb += g0;
        }
        for (int64_t d = 0; d < D; d++) memcpy(J->gwt + d * N + q, &acc[d], sizeof(v16f));
        memcpy(J->gb + q, &gb, sizeof(gb));
    }
    free(acc); free(cs); free(off); free(div);
    return NULL;
}

void conv_mask_pool_backward_cl(const float *rows, const float *go, const uint8_t *bits, float *gwt, float *gb,
                                int64_t B, int64_t H, int64_t W, int64_t N, int64_t D, int size, int stride,
                                int64_t Hp, int64_t Wp, int nthreads) {
    int64_t blocks = N / 16;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > blocks) nthreads = (int)(blocks > 0 ? blocks : 1);
    if (nthreads > 64) nthreads = 64;
    cmpb_job jobs[64]; pthread_t th[64];
    for (int i = 0; i < nthreads; i++) {
        cmpb_job J = {rows, go, bits, gwt, gb, B, H, W, N, D, Hp, Wp, size, stride, blocks * i / nthreads,
                      blocks * (i + 1) / nthreads};
        jobs[i] = J;
    }
    for (int i = 1; i < nthreads; i++) pthread_create(&th[i], NULL, cmpb_worker, &jobs[i]);
    cmpb_worker(&jobs[0]);
    for (int i = 1; i < nthreads; i++) pthread_join(th[i], NULL);
}
