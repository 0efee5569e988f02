/* placeholder until implemented */
typedef int lc_placeholder_unet;
