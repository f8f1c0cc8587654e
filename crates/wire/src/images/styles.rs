//! The style presets `/image/styles` lists and `style_preset` names: each a prompt written
//! around the client's and what it adds to the negative prompt.

/// A style preset: the prompt written around the client's (`{prompt}` stands for it), and
/// what it adds to the negative prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub name: &'static str,
    pub prompt: &'static str,
    pub negative: &'static str,
}

/// The style presets, by the names Venice's clients send.
pub const STYLES: [Style; 17] = [
    Style {
        name: "3D Model",
        prompt: "professional 3d model of {prompt}, octane render, highly detailed, volumetric, dramatic lighting",
        negative: "ugly, deformed, noisy, low poly, blurry, painting",
    },
    Style {
        name: "Analog Film",
        prompt: "analog film photo of {prompt}, faded film, desaturated, 35mm photo, grainy, vignette, vintage, Kodachrome",
        negative: "painting, drawing, illustration, cartoon, anime, 3d render, glitch, deformed",
    },
    Style {
        name: "Anime",
        prompt: "anime artwork of {prompt}, anime style, key visual, vibrant, studio anime, highly detailed",
        negative: "photo, deformed, black and white, realism, disfigured, low contrast",
    },
    Style {
        name: "Cinematic",
        prompt: "cinematic film still of {prompt}, shallow depth of field, vignette, highly detailed, high budget, bokeh, cinemascope, moody, film grain",
        negative: "anime, cartoon, graphic, text, painting, crayon, graphite, abstract, glitch, deformed",
    },
    Style {
        name: "Comic Book",
        prompt: "comic of {prompt}, graphic illustration, comic art, graphic novel art, vibrant, highly detailed",
        negative: "photograph, deformed, glitch, noisy, realistic, stock photo",
    },
    Style {
        name: "Craft Clay",
        prompt: "play-doh style {prompt}, sculpture, clay art, centered composition, claymation",
        negative: "sloppy, messy, grainy, highly detailed, ultra textured, photo",
    },
    Style {
        name: "Digital Art",
        prompt: "concept art of {prompt}, digital artwork, illustrative, painterly, matte painting, highly detailed",
        negative: "photo, photorealistic, realism, ugly",
    },
    Style {
        name: "Enhance",
        prompt: "breathtaking {prompt}, award-winning, professional, highly detailed",
        negative: "ugly, deformed, noisy, blurry, distorted, grainy",
    },
    Style {
        name: "Fantasy Art",
        prompt: "ethereal fantasy concept art of {prompt}, magnificent, celestial, ethereal, painterly, epic, majestic, magical, fantasy art, cover art, dreamy",
        negative: "photographic, realistic, realism, 35mm film, dslr, cropped, frame, text, deformed, glitch, noise, sloppy",
    },
    Style {
        name: "Isometric Style",
        prompt: "isometric style {prompt}, vibrant, beautiful, crisp, detailed, ultra detailed, intricate",
        negative: "deformed, mutated, ugly, disfigured, blur, blurry, noise, noisy, realistic, photographic",
    },
    Style {
        name: "Line Art",
        prompt: "line art drawing of {prompt}, professional, sleek, modern, minimalist, graphic, line art, vector graphics",
        negative: "anime, photorealistic, 35mm film, deformed, glitch, blurry, noisy, off-center, realism, photo, painting, colorful",
    },
    Style {
        name: "Low Poly",
        prompt: "low-poly style {prompt}, low-poly game art, polygon mesh, jagged, blocky, wireframe edges, centered composition",
        negative: "noisy, sloppy, messy, grainy, highly detailed, ultra textured, photo",
    },
    Style {
        name: "Neon Punk",
        prompt: "neonpunk style {prompt}, cyberpunk, vaporwave, neon, vibes, vibrant, stunningly beautiful, crisp, detailed, sleek, ultramodern, magenta highlights, dark purple shadows, high contrast, cinematic",
        negative: "painting, drawing, illustration, glitch, deformed, mutated, cross-eyed, ugly, disfigured",
    },
    Style {
        name: "Origami",
        prompt: "origami style {prompt}, paper art, pleated paper, folded, origami art, pleats, cut and fold, centered composition",
        negative: "noisy, sloppy, messy, grainy, highly detailed, ultra textured, photo",
    },
    Style {
        name: "Photographic",
        prompt: "cinematic photo of {prompt}, 35mm photograph, film, bokeh, professional, 4k, highly detailed",
        negative: "drawing, painting, crayon, sketch, graphite, impressionist, noisy, blurry, soft, deformed, ugly",
    },
    Style {
        name: "Pixel Art",
        prompt: "pixel-art {prompt}, low-res, blocky, pixel art style, 8-bit graphics",
        negative: "sloppy, messy, blurry, noisy, highly detailed, ultra textured, photo, realistic",
    },
    Style {
        name: "Texture",
        prompt: "texture {prompt}, top down, close-up",
        negative: "",
    },
];

/// The style named `name` (letter case and spaces or dashes between words ignored).
pub fn style(name: &str) -> Option<&'static Style> {
    let key = |text: &str| {
        text.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let wanted = key(name);
    STYLES.iter().find(|style| key(style.name) == wanted)
}

impl Style {
    /// The prompt and negative prompt with this style applied.
    pub fn apply(&self, prompt: &str, negative: Option<&str>) -> (String, Option<String>) {
        let styled = self.prompt.replace("{prompt}", prompt);
        let negative = match (negative.filter(|text| !text.is_empty()), self.negative) {
            (Some(own), "") => Some(own.to_owned()),
            (Some(own), added) => Some(format!("{own}, {added}")),
            (None, "") => None,
            (None, added) => Some(added.to_owned()),
        };
        (styled, negative)
    }
}
