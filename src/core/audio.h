#ifndef LC_AUDIO_H
#define LC_AUDIO_H
/* placeholder until implemented */
#endif
