{
	"subject": {{ toJson .Subject }},
	"sans": {{ toJson .SANs }},
{{- if typeIs "*rsa.PublicKey" .Insecure.CR.PublicKey }}
	"keyUsage": ["keyEncipherment", "digitalSignature"],
{{- else }}
	"keyUsage": ["digitalSignature"],
{{- end }}
{{- if hasSuffix "-client" .Subject.CommonName }}
	"extKeyUsage": ["clientAuth"]
{{- else }}
	"extKeyUsage": ["serverAuth", "clientAuth"]
{{- end }}
}
