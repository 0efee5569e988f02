#ifndef LC_SAFETENSORS_H
#define LC_SAFETENSORS_H
/* placeholder until implemented */
#endif
