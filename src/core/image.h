#ifndef LC_IMAGE_H
#define LC_IMAGE_H
/* placeholder until implemented */
#endif
