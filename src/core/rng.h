#ifndef LC_RNG_H
#define LC_RNG_H
/* placeholder until implemented */
#endif
