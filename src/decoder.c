/* decoder.c - the registry of decoder kinds: cfg.decoder -> its step interface
 * (decoder.h). Adding a kind = one more s2s_decoder_ops and one line here. */
#include "decoder.h"

#include <string.h>

#include "model.h"

const s2s_decoder_ops *s2s_decoder_ops_for(const s2s_model *m) {
    static const s2s_decoder_ops *const kinds[] = {
        &s2s_transformer_decoder, &s2s_ssru_decoder, &s2s_gru_decoder, &s2s_lstm_decoder,
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(m->cfg.decoder, kinds[i]->kind) == 0) return kinds[i];
    return NULL;
}
