#pragma once
// The Fortran BLAS entry points that every BLAS exports (OpenBLAS, MKL, the reference one), for
// the products the engine, the text encoder and the FAISS shortlist call directly: Debian's
// LibTorch and FAISS link the same system BLAS. Column-major, arguments by pointer.

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
void sgemv_(const char* trans, const int* m, const int* n, const float* alpha, const float* a, const int* lda,
            const float* x, const int* incx, const float* beta, float* y, const int* incy);
}
