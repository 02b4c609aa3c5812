/* decoder.c - the registry of decoder kinds: cfg.decoder -> its step interface
 * (decoder.h). Adding a kind = one more s2s_decoder_ops and one line here. A
 * Transformer decoder with T2R attention (cfg.dec_attn t2r) gets decoder_t2r.c. A model
 * moved to the GPU (s2s_model_to_cuda: m->on_cuda) gets the GPU version of its kind
 * (decoder_cuda.cu), whose start() takes the encoder output in device memory. */
#include "decoder.h"

#include <string.h>

#include "model.h"

#ifdef S2S_CUDA
/* decoder_cuda.cu */
extern const s2s_decoder_ops s2s_transformer_decoder_cuda;
extern const s2s_decoder_ops s2s_ssru_decoder_cuda;
extern const s2s_decoder_ops s2s_gru_decoder_cuda;
extern const s2s_decoder_ops s2s_lstm_decoder_cuda;
#endif

const s2s_decoder_ops *s2s_decoder_ops_for(const s2s_model *m) {
    static const s2s_decoder_ops *const kinds[] = {
        &s2s_transformer_decoder, &s2s_ssru_decoder, &s2s_gru_decoder, &s2s_lstm_decoder,
    };
    /* T2R attention (a Transformer decoder only): CPU only, s2s_model_to_cuda refuses it */
    if (s2s_config_is_t2r(&m->cfg))
        return !m->on_cuda && !strcmp(m->cfg.decoder, "transformer") ? &s2s_t2r_decoder : NULL;
    const s2s_decoder_ops *const *table = kinds;
#ifdef S2S_CUDA
    static const s2s_decoder_ops *const cuda_kinds[] = {
        &s2s_transformer_decoder_cuda, &s2s_ssru_decoder_cuda, &s2s_gru_decoder_cuda,
        &s2s_lstm_decoder_cuda,
    };
    if (m->on_cuda) table = cuda_kinds;
#endif
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(m->cfg.decoder, table[i]->kind) == 0) return table[i];
    return NULL;
}
