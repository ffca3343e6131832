namespace FaaSTube.Kernels;

/// <summary>CUDA C++ source of the built-in kernels, compiled at run time with NVRTC (see DataChecksum and DataPattern for the CPU twins).</summary>
internal static class CudaKernelSource
{
    public const string FillPattern = "faastube_fill_pattern";
    public const string Checksum = "faastube_checksum";

    public const string Source = """
        typedef unsigned long long u64;
        __device__ __forceinline__ u64 ft_mix(u64 z) {
            z += 0x9E3779B97F4A7C15ULL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
            return z ^ (z >> 31);
        }

        // Writes word i of the pattern at byte 8*(i - firstWord); the tail word is cut to length.
        extern "C" __global__ void faastube_fill_pattern(unsigned char* dst, u64 length, u64 seed, u64 firstWord) {
            u64 words = (length + 7) / 8;
            bool aligned = (((u64)dst) & 7) == 0;
            for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < words; i += (u64)gridDim.x * blockDim.x) {
                u64 v = ft_mix(seed + firstWord + i);
                u64 off = i * 8;
                if (aligned && off + 8 <= length) {
                    *(u64*)(dst + off) = v;
                } else {
                    for (int b = 0; b < 8 && off + b < length; b++) dst[off + b] = (unsigned char)(v >> (8 * b));
                }
            }
        }

        // Adds sum_i mix(word_i ^ (firstWord + i) * golden) into *result (a partial checksum).
        extern "C" __global__ void faastube_checksum(const unsigned char* src, u64 length, u64 firstWord, u64* result) {
            u64 words = (length + 7) / 8;
            bool aligned = (((u64)src) & 7) == 0;
            u64 acc = 0;
            for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < words; i += (u64)gridDim.x * blockDim.x) {
                u64 off = i * 8;
                u64 w;
                if (aligned && off + 8 <= length) {
                    w = *(const u64*)(src + off);
                } else {
                    w = 0;
                    for (int b = 0; b < 8 && off + b < length; b++) w |= ((u64)src[off + b]) << (8 * b);
                }
                acc += ft_mix(w ^ ((firstWord + i) * 0x9E3779B97F4A7C15ULL));
            }
            for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
            if ((threadIdx.x & 31) == 0) atomicAdd(result, acc);
        }
        """;
}
