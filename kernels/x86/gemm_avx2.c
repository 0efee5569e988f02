/* placeholder until implemented */
typedef int lk_placeholder_avx2;
